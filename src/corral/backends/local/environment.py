"""What a local component's process gets in its environment, and nothing else: nothing of
the control plane's own configuration (database URL, tokens) reaches a workload."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from corral.backends.base import Launch
from corral.backends.identity import RunAs
from corral.backends.local import files as f
from corral.backends.local import gpus as gpu_detect
from corral.backends.local.workarea import unreachable

DEFAULT_INHERITED_ENV: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "TERM",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "NCCL_*",
    "HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
)
# A workload that runs as a project's user gets its own HOME and user name instead of these.
PER_USER_ENV: tuple[str, ...] = ("HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "XDG_*", "HF_HOME", "HF_HUB_CACHE")


def component_environment(launch: Launch, component_id: int, *, inherit: Sequence[str], devices: list[int],
                          port: int | None, sub: Callable[[str], str], run_as: RunAs | None, home: Path,
                          reports: Path, event_file: Path) -> dict[str, str]:
    """A component's whole environment: what it inherits of Corral's (``inherit``; a name
    ending in ``*`` is a prefix), its own user's HOME and PATH when it runs as one, the
    launch's variables (``sub`` fills in ``{port}`` and the like), its GPUs, and Corral's."""
    env: dict[str, str] = {}
    for name in inherit:
        if name.endswith("*"):
            env.update({k: v for k, v in os.environ.items() if k.startswith(name[:-1])})
        elif name in os.environ:
            env[name] = os.environ[name]
    if run_as is not None:  # nothing that points into Corral's own home or caches
        for name in PER_USER_ENV:
            for key in [k for k in env if k == name or (name.endswith("*") and k.startswith(name[:-1]))]:
                del env[key]
        env.update({"HOME": str(home), "USER": run_as.user, "LOGNAME": run_as.user, "SHELL": "/bin/sh"})
        # PATH entries the user cannot pass (Corral's own ~/bin) only turn "not found" into EACCES.
        path = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and unreachable(p) is None]
        env["PATH"] = os.pathsep.join(path) or os.defpath
    env.setdefault("PATH", os.defpath)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({key: sub(value) for key, value in launch.env.items()})
    env.update(gpu_detect.visible_devices_env(devices))
    env.update({
        "CORRAL_COMPONENT_ID": str(component_id),
        "CORRAL_WORKLOAD_ID": str(launch.workload_id),
        "CORRAL_PROJECT": launch.project,
        "CORRAL_NATIVE_NAME": launch.native_name,
        f.ENV_PROGRESS_FILE: str(reports / f.PROGRESS),
        f.ENV_RESULT_FILE: str(reports / f.RESULT),
        f.ENV_EVENT_FILE: str(event_file),
    })
    if port:
        env["PORT"] = str(port)
    return env
