"""Cluster health from the agent's heartbeat."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class ClusterHealth(StrEnum):
    VERIFYING = "verifying"  # never heard from
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # silent past the threshold


def cluster_health(last_heartbeat_at: datetime | None, now: datetime, unhealthy_after_s: float) -> ClusterHealth:
    if last_heartbeat_at is None:
        return ClusterHealth.VERIFYING
    if (now - last_heartbeat_at).total_seconds() > unhealthy_after_s:
        return ClusterHealth.UNHEALTHY
    return ClusterHealth.HEALTHY


CLUSTER_KINDS = ("local", "kubernetes", "slurm")
