from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.domain.names import check_dns_label
from corral.domain.resources import Limit, Resources, format_bytes, parse_bytes, parse_millicores
from corral.domain.workloads import WorkloadSpec, WorkloadType, is_preemptible, plan_components

SPEC = TypeAdapter(WorkloadSpec)


@pytest.mark.parametrize(("text", "expected"), [
    ("16Gi", 16 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), (1024, 1024), ("1.5Gi", int(1.5 * 2**30)),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1Gi", "16 GB", "500m", True])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError):
        parse_bytes(bad)


@pytest.mark.parametrize(("text", "expected"), [("2", 2000), ("500m", 500), (0.5, 500), (4, 4000)])
def test_parse_millicores(text, expected):
    assert parse_millicores(text) == expected


def test_format_bytes():
    assert format_bytes(16 * 2**30) == "16Gi"
    assert format_bytes(1536 * 2**20) == "1.5Gi"


def test_resource_arithmetic_and_limits():
    a, b = Resources(1, 1000, 10, 0), Resources(2, 500, 5, 1)
    assert a + b == Resources(3, 1500, 15, 1)
    assert a.fits_within(a + b) and not (a + b).fits_within(a)
    assert Limit(gpu=2).exceeded_dimensions(Resources(gpu=3, cpu=10**9)) == ["gpu"]
    assert Limit().admits(Resources(gpu=10**6))  # unbounded


@pytest.mark.parametrize("name", ["ab", "vision-team", "a1"])
def test_dns_label_ok(name):
    assert check_dns_label(name) == name


@pytest.mark.parametrize("name", ["a", "Vision", "-ab", "ab-", "a_b", "x" * 42])
def test_dns_label_rejected(name):
    with pytest.raises(ValueError):
        check_dns_label(name)


BASE = {"name": "w", "project": "p"}
VALID = {
    WorkloadType.MODEL_DOWNLOAD: {"source": "meta-llama/Llama-3.1-8B"},
    WorkloadType.INFERENCE: {"model": "meta-llama/Llama-3.1-8B"},
    WorkloadType.TRAINING: {"dataset": "s3://data/train", "command": "python train.py"},
    WorkloadType.PRE_TRAINING: {"dataset": "s3://data/corpus", "image": "trainer:1"},
    WorkloadType.FINE_TUNING: {"base_model": "llama", "dataset": "alpaca", "command": ["python", "ft.py"]},
    WorkloadType.EVALUATION: {"model": "llama", "tasks": ["mmlu"], "command": "lm-eval"},
    WorkloadType.WORKSPACE: {},
    WorkloadType.CUSTOM: {"command": "sleep 1"},
}


@pytest.mark.parametrize("kind", list(WorkloadType))
def test_every_type_has_a_valid_spec(kind):
    spec = SPEC.validate_python({**BASE, "type": kind.value, **VALID[kind]})
    assert spec.type is kind


# What each type needs, beyond the common fields.
MISSING = [
    (WorkloadType.MODEL_DOWNLOAD, {}, "source"),
    (WorkloadType.INFERENCE, {}, "model"),
    (WorkloadType.TRAINING, {"command": "x"}, "dataset"),
    (WorkloadType.FINE_TUNING, {"dataset": "d", "command": "x"}, "base_model"),
    (WorkloadType.FINE_TUNING, {"dataset": "d", "base_model": "m"}, "image or a command"),
    (WorkloadType.EVALUATION, {"model": "m", "command": "x"}, "dataset or evaluation tasks"),
    (WorkloadType.CUSTOM, {}, "exactly one of command, manifest or batch_script"),
]


@pytest.mark.parametrize(("kind", "body", "needle"), MISSING)
def test_type_specific_fields_are_required(kind, body, needle):
    with pytest.raises(ValidationError, match=needle):
        SPEC.validate_python({**BASE, "type": kind.value, **body})


def test_model_download_source_must_be_a_repo_or_url():
    with pytest.raises(ValidationError, match="Hugging Face repository"):
        SPEC.validate_python({**BASE, "type": "model_download", "source": "not a source"})
    assert SPEC.validate_python({**BASE, "type": "model_download", "source": "https://x.org/m.bin"})


def test_evaluation_tasks_may_be_written_as_text():
    spec = {**BASE, "type": "evaluation", "model": "m", "command": "lm-eval"}
    assert SPEC.validate_python({**spec, "tasks": "hellaswag"}).tasks == ["hellaswag"]
    assert SPEC.validate_python({**spec, "tasks": " hellaswag, arc_easy ,"}).tasks == ["hellaswag", "arc_easy"]
    assert SPEC.validate_python({**spec, "tasks": ["mmlu"]}).tasks == ["mmlu"]
    with pytest.raises(ValidationError, match="dataset or evaluation tasks"):
        SPEC.validate_python({**spec, "tasks": " , "})


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError, match="Extra inputs"):
        SPEC.validate_python({**BASE, "type": "workspace", "gpus": 1})


@pytest.mark.parametrize(("text", "kind"), [("Fine-Tuning", WorkloadType.FINE_TUNING),
                                            ("model download", WorkloadType.MODEL_DOWNLOAD),
                                            ("pre_training", WorkloadType.PRE_TRAINING)])
def test_type_accepts_seed_labels(text, kind):
    assert WorkloadType.parse(text) is kind


def test_seed_type_labels():
    assert [t.label for t in WorkloadType] == [
        "Model Download", "Inference", "Training", "Pre-Training", "Fine-Tuning", "Evaluation", "Workspace",
        "Custom"]


def test_services_are_a_server_and_an_endpoint_and_not_preemptible():
    spec = SPEC.validate_python({**BASE, "type": "inference", "model": "m", "replicas": 2,
                                 "resources": {"gpu": 1, "cpu": "4", "memory": "16Gi"}})
    plans = plan_components(spec)
    assert [p.kind for p in plans] == ["server", "endpoint"]
    assert plans[0].requests == Resources(2, 8000, 32 * 2**30, 0)  # replicas multiply the request
    assert plans[1].requests == Resources()
    assert not is_preemptible(spec)


def test_batch_is_one_job_and_preemptible_unless_told():
    spec = SPEC.validate_python({**BASE, "type": "training", "dataset": "d", "command": "x"})
    assert [p.kind for p in plan_components(spec)] == ["job"]
    assert is_preemptible(spec)
    spec = SPEC.validate_python({**BASE, "type": "training", "dataset": "d", "command": "x", "preemptible": False})
    assert not is_preemptible(spec)
