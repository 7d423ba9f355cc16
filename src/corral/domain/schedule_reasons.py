"""Why a workload waits: the texts of the scheduling pass's reasons, with numbers.

Formatted amounts and whole reasons are memoised: the same few shapes recur in most of a
100,000-workload pass."""

from __future__ import annotations

from corral.domain.resources import RESOURCE_NAMES, format_bytes, format_millicores

_DIMS = (0, 1, 2, 3)
BORROWS, RECLAIM_SHORT = 1, 2  # why a workload short of cluster capacity waits


_FORMATTED: dict[tuple[int, float], str] = {}  # the same few amounts recur in most reasons


def _fmt(dim: int, value: float) -> str:
    text = _FORMATTED.get((dim, value))
    if text is None:
        if dim == 0:
            text = str(value)
        elif dim == 1:
            text = format_millicores(value)  # type: ignore[arg-type]
        else:
            text = format_bytes(value)  # type: ignore[arg-type]
        if len(_FORMATTED) > 10_000:
            _FORMATTED.clear()
        _FORMATTED[(dim, value)] = text
    return text


def _amounts(dims: list[int], values) -> str:  # type: ignore[no-untyped-def]
    """"gpu 4" for one dimension, "gpu 4, memory 8Gi" for several."""
    return ", ".join(f"{RESOURCE_NAMES[i]} {_fmt(i, values[i])}" for i in dims)


def _bare(dims: list[int], values) -> str:  # type: ignore[no-untyped-def]
    """"4" for one dimension (already named), else "gpu 4, memory 8Gi"."""
    if len(dims) == 1:
        return _fmt(dims[0], values[dims[0]])
    return _amounts(dims, values)


def seconds(s: float) -> str:
    return f"{s:g}s"


class Reasons:
    """The reason methods of the pass (mixed into it): they read ``self.names`` and memoise
    in ``self.reasons``."""

    names: dict[int, str]
    reasons: dict[tuple, str]

    def name(self, project_id: int) -> str:
        return self.names.get(project_id) or f"project {project_id}"

    def _never_fits(self, r, preemptible, g, lim, cap, p) -> str:  # type: ignore[no-untyped-def]
        """Why a request can never fit as configured (rule 3)."""
        dims = [i for i in _DIMS if r[i] > lim[i]]
        if dims:
            return (f"request exceeds the limit of project {self.name(p)} on this cluster: "
                    f"{_amounts(dims, r)} requested (limit {_bare(dims, lim)})")
        dims = [] if preemptible else [i for i in _DIMS if r[i] > g[i]]
        if dims:
            return (f"non-preemptible request exceeds the guarantee of project {self.name(p)} on this "
                    f"cluster: {_amounts(dims, r)} requested (guarantee {_bare(dims, g)})")
        dims = [i for i in _DIMS if r[i] > cap[i]]
        return (f"request exceeds the cluster's capacity: {_amounts(dims, r)} requested "
                f"(capacity {_bare(dims, cap)})")

    # -- reasons ------------------------------------------------------------------------

    def _quota_reason(self, p, r, u, g, lim) -> str:  # type: ignore[no-untyped-def]
        # workloads of one project often ask for the same shapes: reuse the text while usage holds
        memo = (p, u[0], u[1], u[2], u[3], r, lim, g)
        text = self.reasons.get(memo)
        if text is None:
            text = self.reasons[memo] = self._format_quota_reason(p, r, u, g, lim)
        return text

    def _format_quota_reason(self, p, r, u, g, lim) -> str:  # type: ignore[no-untyped-def]
        dims = [i for i in _DIMS if u[i] + r[i] > lim[i]]
        if len(dims) == 1:
            i = dims[0]
            bound = _fmt(i, lim[i])
            return (f"waiting for quota: {RESOURCE_NAMES[i]} {_fmt(i, u[i])}/{bound} in use in project "
                    f"{self.name(p)} (limit {bound}), {_fmt(i, r[i])} requested")
        if dims:
            used, limits, wanted = [], [], []
            for i in dims:
                name, bound = RESOURCE_NAMES[i], _fmt(i, lim[i])
                used.append(f"{name} {_fmt(i, u[i])}/{bound}")
                limits.append(f"{name} {bound}")
                wanted.append(f"{name} {_fmt(i, r[i])}")
            return (f"waiting for quota: {', '.join(used)} in use in project {self.name(p)} "
                    f"(limit {', '.join(limits)}), {', '.join(wanted)} requested")
        dims = [i for i in _DIMS if u[i] + r[i] > g[i]]
        left = [max(g[i] - u[i], 0) for i in _DIMS]
        return (f"non-preemptible: needs {_amounts(dims, r)} within the guarantee of project "
                f"{self.name(p)}, {_bare(dims, left)} left")

    def _cluster_reason(self, r, f, p: int, why: int) -> str:  # type: ignore[no-untyped-def]
        memo = (r, f[0], f[1], f[2], f[3], p if why == BORROWS else None, why)
        text = self.reasons.get(memo)
        if text is None:
            parts = "; ".join(
                f"{RESOURCE_NAMES[i]} {_fmt(i, max(f[i], 0))} free, {_fmt(i, r[i])} requested"
                for i in _DIMS if r[i] > f[i]
            )
            if why == BORROWS:
                suffix = f" (above the guarantee of project {self.name(p)}: waits for idle capacity)"
            else:
                suffix = " (not enough borrowed capacity to reclaim)"
            text = self.reasons[memo] = f"waiting for cluster capacity: {parts}{suffix}"
        return text

