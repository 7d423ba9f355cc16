"""The local backend: workload components as processes on this host.

``LocalBackend`` (``backend.py``) is the entry point; each component runs under a
supervisor process (``supervisor.py``); ``download.py`` and ``jobrun.py`` are the runners
that recipes put in front of model downloads and training-type jobs; ``modelstore.py``
is the model store on disk. See ``files.py`` for the layout of the state directory.

``LocalBackend`` is imported lazily so that supervisors, which import this package, stay
small and start fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing`: supervisors import this package and must stay small
if TYPE_CHECKING:
    from typing import Any

    from corral.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]


def __getattr__(name: str) -> Any:
    if name == "LocalBackend":
        from corral.backends.local.backend import LocalBackend

        return LocalBackend
    raise AttributeError(name)
