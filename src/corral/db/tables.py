"""The schema. Hot read paths query these tables as Core selects returning tuples."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corral.db.types import BigIntPK, UTCDateTime
from corral.domain.statuses import WorkloadStatus

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)



class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Argon2 hash for signing in to the web UI; NULL: the user has no password (tokens only).
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    __table_args__ = (CheckConstraint("role IN ('admin', 'member')", name="role"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the session token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(41), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    preemption_policy: Mapped[str] = mapped_column(String(16), default="lower_priority")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("preemption_policy IN ('never', 'lower_priority')", name="preemption_policy"),
    )


class ProjectMember(Base):
    __tablename__ = "project_members"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_project_members_user_id", "user_id", "project_id"),)


class Cluster(Base):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(41), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    capacity_gpu: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity_cpu: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity_memory: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity_ephemeral_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    nodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    agent_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Where the agent serves component output to the control plane (from its heartbeat).
    agent_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # How its agent keeps workloads apart (one line, as reported in its heartbeat).
    isolation: Mapped[str | None] = mapped_column(String(500), nullable=True)
    __table_args__ = (CheckConstraint("kind IN ('local', 'kubernetes', 'slurm')", name="kind"),)


class Quota(Base):
    __tablename__ = "quotas"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), index=True)
    guaranteed_gpu: Mapped[int] = mapped_column(BigInteger, default=0)
    guaranteed_cpu: Mapped[int] = mapped_column(BigInteger, default=0)
    guaranteed_memory: Mapped[int] = mapped_column(BigInteger, default=0)
    guaranteed_ephemeral_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    # NULL: unbounded in that dimension (the project may borrow whatever is idle).
    limit_gpu: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    limit_cpu: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    limit_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    limit_ephemeral_storage: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("project_id", "cluster_id"),)


# What the workloads table shows by default: every status but this one. The partial index
# on it says so with this constant, and so must a query that is to be answered from it.
HIDDEN_STATUS = WorkloadStatus.DELETED.value
VISIBLE_CONDITION = f"status <> '{HIDDEN_STATUS}'"


class Workload(Base):
    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"))
    # Denormalised (both immutable) so that the table sorts by what it shows, from an index.
    cluster_name: Mapped[str] = mapped_column(String(41))
    created_by: Mapped[str] = mapped_column(String(254))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    preemptible: Mapped[bool] = mapped_column(Boolean)
    gpu: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu: Mapped[int] = mapped_column(BigInteger, default=0)
    memory: Mapped[int] = mapped_column(BigInteger, default=0)
    ephemeral_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delete_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_running_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    running_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    endpoints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # False: the user named no cluster; it is placed at admission where it fits (quotas.md).
    cluster_named: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Set on a preempted workload: the workload it made room for, which starts only once
    # this one's components are gone from the cluster.
    preempted_for: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # How the request is split over the cluster's nodes (``domain.workloads.placement_units``):
    # ``units`` equal parts, each on one node; ``spread``: each on a node of its own.
    units: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    spread: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Bumped by every status write, so concurrent writers can guard their update.
    version: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        # One index per sortable column, project first, ordered as the table sorts
        # (column, then created_at and id); status and type trail so that the default
        # view and the type and status filters are answered from the index alone.
        *(Index(f"ix_workloads_project_{name}", "project_id", *columns, "created_at", "id", *trailing)
          for name, columns, trailing in (
              # The default sort's index carries every filtered column, so a filtered
              # page, and the sample that estimates a name filter's total, never read rows.
              ("created", (), ("status", "type", "cluster_name", "created_by", "name")),
              ("status", ("status",), ("type",)),
              ("type", ("type",), ("status",)),
              ("cluster", ("cluster_name",), ("status", "type")),
              ("creator", ("created_by",), ("status", "type")),
              ("gpu", ("gpu",), ("status", "type")),
              ("cpu", ("cpu",), ("status", "type")),
              ("memory", ("memory",), ("status", "type")),
          )),
        # The default view (every status but Deleted) in the default order, narrow: a jump
        # deep into a big project (an OFFSET) walks it without testing each entry's status,
        # about five times faster than walking the wide index above with the status list.
        Index("ix_workloads_project_visible", "project_id", "created_at", "id", "status",
              sqlite_where=text(VISIBLE_CONDITION), postgresql_where=text(VISIBLE_CONDITION)),
        Index("ix_workloads_created", "created_at", "id"),
        Index("ix_workloads_cluster_status", "cluster_id", "status"),
        Index("ix_workloads_preempted_for", "preempted_for"),
        CheckConstraint(
            "type IN ('model_download', 'inference', 'training', 'pre_training', 'fine_tuning',"
            " 'evaluation', 'workspace', 'custom')",
            name="type",
        ),
    )


# Sorting by name ignores case ("alpha" before "Beta"): the name's index is on lower(name),
# ordered as the table sorts (then created_at and id); status and type trail, as above.
Index("ix_workloads_project_name", Workload.project_id, func.lower(Workload.name), Workload.created_at,
      Workload.id, Workload.status, Workload.type)


class Component(Base):
    __tablename__ = "components"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # True once a backend has created it on the cluster; a never-placed component is
    # Deleted at once when its workload is deleted.
    placed: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu: Mapped[int] = mapped_column(BigInteger, default=0)
    memory: Mapped[int] = mapped_column(BigInteger, default=0)
    ephemeral_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the component left behind when it finished, as its agent reported it and the
    # server validated it (services/results.py): {"model": ...} or {"metrics": {...}}.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Event(Base):
    """Append-only: what happened to a workload, project, quota or cluster."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(254))  # a user's email, or "system"
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    project_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    kind: Mapped[str] = mapped_column(String(48))
    message: Mapped[str] = mapped_column(Text)
    __table_args__ = (
        Index("ix_events_subject", "subject_type", "subject_id", "id"),
        Index("ix_events_project", "project_id", "id"),
    )


class WorkloadCount(Base):
    """Workloads per project, cluster, type and status, kept by the only status writer.

    Totals and stats for the common filters read a few of these rows instead of counting
    hundreds of thousands of workloads per request.
    """

    __tablename__ = "workload_counts"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


users = User.__table__
api_tokens = ApiToken.__table__
web_sessions = WebSession.__table__
projects = Project.__table__
project_members = ProjectMember.__table__
clusters = Cluster.__table__
quotas = Quota.__table__
workloads = Workload.__table__
components = Component.__table__
events = Event.__table__
workload_counts = WorkloadCount.__table__


class ProjectUsage(Base):
    """What a project holds on a cluster (admitted, unfinished workloads) and how many wait.

    Kept by the status writer and the scheduler in the same transaction as the workload
    change, so quota views and admission read one row instead of summing workloads.
    """

    __tablename__ = "project_usage"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True)
    gpu: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu: Mapped[int] = mapped_column(BigInteger, default=0)
    memory: Mapped[int] = mapped_column(BigInteger, default=0)
    ephemeral_storage: Mapped[int] = mapped_column(BigInteger, default=0)
    queued: Mapped[int] = mapped_column(BigInteger, default=0)


project_usage = ProjectUsage.__table__


# --------------------------------------------------------------------------- project secrets

class ProjectSecret(Base):
    """A named secret of a project. The value is stored only as a Fernet token encrypted with
    the server's key (``corral.services.keys``); the API never returns it."""

    __tablename__ = "project_secrets"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("project_id", "name"),)


project_secrets = ProjectSecret.__table__


# --------------------------------------------------------------------------- model store

class Model(Base):
    """A model in a project's store on a cluster, as the cluster's agent last reported the
    store's inventory (services/models.py): a model removed or replaced on disk is removed
    or replaced here at the next report."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    revision: Mapped[str | None] = mapped_column(String(256), nullable=True)
    base_model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    dataset: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # The workload that produced it, when that workload is of the same project (checked
    # at write: the manifest is written by the project's own workloads).
    workload_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("cluster_id", "project_id", "name"),
        Index("ix_models_project_name", "project_id", "name"),
    )


models = Model.__table__


# --------------------------------------------------------------------------- use over time

class ComponentUsage(Base):
    """What a running component used, sampled by its cluster's agent (services/usage.py).
    Bounded: samples older than the retention go, and each component keeps its newest
    ``usage_max_samples_per_component``."""

    __tablename__ = "component_usage"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    cpu: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # millicores
    memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gpu_utilization: Mapped[float | None] = mapped_column(Float, nullable=True)  # percent
    gpu_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        Index("ix_component_usage_component_at", "component_id", "at"),
        Index("ix_component_usage_at", "at"),
    )


class QuotaHistory(Base):
    """A project's quota on a cluster and what it used, sampled by the server."""

    __tablename__ = "quota_history"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_gpu: Mapped[int] = mapped_column(BigInteger)
    used_cpu: Mapped[int] = mapped_column(BigInteger)
    used_memory: Mapped[int] = mapped_column(BigInteger)
    guaranteed_gpu: Mapped[int] = mapped_column(BigInteger)
    guaranteed_cpu: Mapped[int] = mapped_column(BigInteger)
    guaranteed_memory: Mapped[int] = mapped_column(BigInteger)
    limit_gpu: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    limit_cpu: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    limit_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        Index("ix_quota_history_project_at", "project_id", "cluster_id", "at"),
        Index("ix_quota_history_at", "at"),
    )


class AllocationHistory(Base):
    """A cluster's capacity, what admitted workloads hold and what projects are guaranteed."""

    __tablename__ = "allocation_history"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    capacity_gpu: Mapped[int] = mapped_column(BigInteger)
    capacity_cpu: Mapped[int] = mapped_column(BigInteger)
    capacity_memory: Mapped[int] = mapped_column(BigInteger)
    allocated_gpu: Mapped[int] = mapped_column(BigInteger)
    allocated_cpu: Mapped[int] = mapped_column(BigInteger)
    allocated_memory: Mapped[int] = mapped_column(BigInteger)
    guaranteed_gpu: Mapped[int] = mapped_column(BigInteger)
    guaranteed_cpu: Mapped[int] = mapped_column(BigInteger)
    guaranteed_memory: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_allocation_history_cluster_at", "cluster_id", "at"),)


component_usage = ComponentUsage.__table__
quota_history = QuotaHistory.__table__
allocation_history = AllocationHistory.__table__
