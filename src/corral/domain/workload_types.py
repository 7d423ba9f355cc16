"""Workload types and priorities: plain enums with the labels people read.

Kept apart from the typed specs (corral.domain.workloads, which builds pydantic models at
import) so that the HTTP client and the CLI can name types without paying for the specs.
"""

from __future__ import annotations

from enum import StrEnum


class WorkloadType(StrEnum):
    MODEL_DOWNLOAD = "model_download"
    INFERENCE = "inference"
    TRAINING = "training"
    PRE_TRAINING = "pre_training"
    FINE_TUNING = "fine_tuning"
    EVALUATION = "evaluation"
    WORKSPACE = "workspace"
    CUSTOM = "custom"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> WorkloadType:
        """Accept the API value or the seed's label, any case: "Fine-Tuning", "fine_tuning"."""
        key = "".join(ch for ch in text.lower() if ch.isalnum())
        for kind in cls:
            if kind.value.replace("_", "") == key:
                return kind
        raise ValueError(f"unknown workload type {text!r}; expected one of: {', '.join(t.value for t in cls)}")


_LABELS = {
    WorkloadType.MODEL_DOWNLOAD: "Model Download",
    WorkloadType.INFERENCE: "Inference",
    WorkloadType.TRAINING: "Training",
    WorkloadType.PRE_TRAINING: "Pre-Training",
    WorkloadType.FINE_TUNING: "Fine-Tuning",
    WorkloadType.EVALUATION: "Evaluation",
    WorkloadType.WORKSPACE: "Workspace",
    WorkloadType.CUSTOM: "Custom",
}

# Long-running types: they serve until deleted, and default to non-preemptible.
SERVICE_TYPES = frozenset({WorkloadType.INFERENCE, WorkloadType.WORKSPACE})


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def value_int(self) -> int:
        """Priority classes of the reference product: low -100, medium 0, high 100."""
        return {"low": -100, "medium": 0, "high": 100}[self.value]
