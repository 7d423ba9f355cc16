"""Corral's typed HTTP client: ``CorralClient(base_url, token)``. It speaks HTTP only."""

from corral.client.client import CorralClient, normalise_server
from corral.client.errors import CorralAPIError, CorralConnectionError, CorralError
from corral.client.models import (
    BulkDeleteItem,
    BulkDeleteResult,
    Cluster,
    ClusterCreated,
    Component,
    Evaluation,
    Evaluations,
    Event,
    Member,
    Membership,
    Model,
    ModelDetail,
    ModelPage,
    Project,
    QueuePosition,
    Quota,
    Secret,
    Token,
    TokenCreated,
    User,
    Workload,
    WorkloadCreated,
    WorkloadDetail,
    WorkloadPage,
    WorkloadRow,
    WorkloadStats,
)

__all__ = [
    "BulkDeleteItem", "BulkDeleteResult", "Cluster", "ClusterCreated", "Component", "CorralAPIError", "CorralClient", "CorralConnectionError",
    "CorralError", "Evaluation", "Evaluations", "Event", "Member", "Membership", "Model", "ModelDetail", "ModelPage",
    "Project", "QueuePosition", "Quota", "Secret", "Token",
    "TokenCreated", "User", "Workload", "WorkloadCreated", "WorkloadDetail", "WorkloadPage", "WorkloadRow",
    "WorkloadStats", "normalise_server",
]
