"""The local backend: real processes on this host, each under its supervisor.

Discovery on the local cluster looks at GPU processes as ``nvidia-smi`` lists them. This
host has no NVIDIA GPU, so ``nvidia-smi`` is a script that lists the processes written
in a file, as the real one would (only those alive): the outsider is a real process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral.backends.base import Backend
from corral.backends.local import LocalBackend
from tests.conformance.engines import Engine, Outsider
from tests.conftest import work_root_for
from tests.integration.backends.conftest import kill_leftovers


class LocalEngine(Engine):
    name = "local"
    timeout = 15.0

    def __init__(self, request, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(request, tmp_path)
        self.state_dir = tmp_path / "local-cluster"
        self.apps = tmp_path / "gpu-apps"
        self.apps.write_text("")
        self.nvidia_smi = tmp_path / "nvidia-smi"
        self.nvidia_smi.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            case "$1" in
              --query-compute-apps=*)
                while IFS=, read -r pid rest; do [ -d "/proc/$pid" ] && echo "$pid,$rest"; done < {self.apps} ;;
              *) exit 2 ;;
            esac
            """))
        self.nvidia_smi.chmod(0o755)
        self.made: list[LocalBackend] = []

    def backend(self) -> Backend:
        backend = LocalBackend(self.state_dir, gpus="0", nvidia_smi=str(self.nvidia_smi),
                               work_root=work_root_for(self.state_dir))
        self.made.append(backend)
        return backend

    def _list_on_gpu(self, pid: int, name: str) -> None:
        with self.apps.open("a") as out:
            out.write(f"{pid}, {name}, GPU-conformance, 100\n")

    @contextmanager
    def outsider(self) -> Iterator[Outsider]:
        process = subprocess.Popen(["sleep", "300"])
        try:
            self._list_on_gpu(process.pid, "sleep")
            yield Outsider(f"pid-{process.pid}", "process", None)
        finally:
            process.kill()
            process.wait()

    def expose(self, backend: Backend, component_id: int) -> None:
        self._list_on_gpu(backend.inspect(component_id)["status"]["pid"], "ours")  # type: ignore[attr-defined]

    def cleanup(self) -> None:
        for backend in self.made:
            if not backend._closed:
                backend.close()
        kill_leftovers(self.state_dir)
        for line in self.apps.read_text().splitlines():  # nothing listed may outlive the test
            pid = int(line.split(",")[0])
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
