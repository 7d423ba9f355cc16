"""When a workload may be queued for deletion: the one rule, for single and bulk deletes.

A workload may be deleted unless it is Deleted, or a delete was already requested and has
not ended in Delete Failed (statuses.md: Delete Failed is a resting state a second delete
retries).
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.domain.statuses import WorkloadStatus


@dataclass(frozen=True, slots=True)
class DeleteRefusal:
    code: str  # "already_deleted" | "already_deleting": the 409's code, the bulk result
    message: str


def delete_refusal(workload_id: int, status: WorkloadStatus, delete_requested: bool) -> DeleteRefusal | None:
    """Why a delete of this workload is refused now; None when it may be queued."""
    if status is WorkloadStatus.DELETED:
        return DeleteRefusal("already_deleted", f"workload {workload_id} is already Deleted")
    if delete_requested and status is not WorkloadStatus.DELETE_FAILED:
        return DeleteRefusal("already_deleting", f"workload {workload_id} is already being deleted ({status.label})")
    return None
