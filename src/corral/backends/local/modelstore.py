"""A project's model store on disk: ``<work root>/<project>/models/<model name>/``, in the
project's directory, which only the project's workloads can read (see ``workarea.py``).

A model is a directory with the model's files and a manifest, ``corral-model.json``::

    {"name": "tiny-llama", "project": "vision", "kind": "download" | "training" | ...,
     "source": "org/model" | "https://..." | null, "revision": null,
     "base_model": null, "dataset": null, "workload_id": 7, "component_id": 12,
     "files": 3, "bytes": 1234567, "created_at": "2026-01-01T00:00:00+00:00"}

A directory without a manifest is not a model (an interrupted install). Models are
installed atomically: their files are assembled in a hidden sibling directory
(``.incoming-<name>-<pid>``) and renamed into place, so a reader sees no model or the
whole model, never a partial one. Installing a name that exists replaces that model.

Standard library only (the runners use it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from corral.backends.local import files as f

MANIFEST = "corral-model.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def store_dir(work_root: str | os.PathLike[str], project: str) -> Path:
    return Path(work_root) / project / "models"


def safe_name(text: str) -> str:
    """A model name usable as a directory name: letters, digits, '.', '_', '-'."""
    name = _UNSAFE.sub("-", text.strip()).strip(".-")[:128]
    if not name:
        raise ValueError(f"{text!r} cannot name a model")
    return name


def model_dir(work_root: str | os.PathLike[str], project: str, name: str) -> Path:
    return store_dir(work_root, project) / safe_name(name)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    data = f.read_json_untrusted(Path(path) / MANIFEST)  # the agent (root) reads it too: no links, no FIFOs
    return data if isinstance(data, dict) else None


def resolve(work_root: str | os.PathLike[str], project: str, reference: str) -> str | None:
    """The directory of the project's model called ``reference``, or None when the store
    has no such model (the reference may then be a Hugging Face repo or a path)."""
    try:
        path = model_dir(work_root, project, reference)
    except ValueError:
        return None
    # The agent (root) resolves this inside a directory the project owns: a link there to
    # another project's store must not reveal which models exist.
    home = os.path.realpath(Path(work_root) / project)
    if not os.path.realpath(path).startswith(home + os.sep):
        return None
    return str(path) if read_manifest(path) is not None else None


def list_models(work_root: str | os.PathLike[str], project: str) -> list[dict[str, Any]]:
    root = store_dir(work_root, project)
    if not root.is_dir():
        return []
    models = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            manifest = read_manifest(entry.path)
            if manifest is not None:
                models.append(dict(manifest, path=entry.path))
    return models


# The manifest's fields a component's result carries (domain/results.py), so that a
# backend that cannot list its store still tells the control plane what was made.
_RESULT_FIELDS = ("kind", "source", "revision", "base_model", "dataset", "created_at")
MAX_PER_PROJECT = 1000  # models listed per project store (inventory); more are left out


def result_of(manifest: dict[str, Any], dest: Path) -> dict[str, Any]:
    """The job's result for a model just installed at ``dest``."""
    return {"model": manifest["name"], "path": str(dest), "bytes": manifest["bytes"], "files": manifest["files"],
            **{k: manifest[k] for k in _RESULT_FIELDS if manifest.get(k) is not None}}


def inventory(work_root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every project's models under the work area (``<root>/<project>/models/*``): the
    manifest's fields with ``project`` (the directory's name, not the manifest's, which the
    project's workloads write) and ``name``. Read by the agent, possibly root, inside
    directories projects own: never through a link, at most MAX_PER_PROJECT per project."""
    root = Path(work_root)
    found: list[dict[str, Any]] = []
    try:
        projects = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)
                          and not e.name.startswith("."))
    except OSError:
        return []
    for project in projects:
        store = store_dir(root, project)
        try:
            if store.is_symlink() or not store.is_dir():
                continue
            entries = sorted((e for e in os.scandir(store) if e.is_dir(follow_symlinks=False)
                              and not e.name.startswith(".")), key=lambda e: e.name)
        except OSError:
            continue
        listed = 0
        for entry in entries:
            if listed >= MAX_PER_PROJECT:
                break
            manifest = read_manifest(entry.path)
            if manifest is None:
                continue
            item = {k: manifest.get(k) for k in (*_RESULT_FIELDS, "files", "bytes", "workload_id")}
            found.append({**item, "project": project, "name": entry.name})
            listed += 1
    return found


def incoming_dir(dest: Path) -> Path:
    """A fresh hidden directory next to ``dest`` to assemble a model in."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = dest.parent / f".incoming-{dest.name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    count = total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                count += 1
            except OSError:
                pass
    return count, total


def install(assembled: Path, dest: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Move a model assembled in ``assembled`` to ``dest`` with its manifest, atomically.

    ``assembled`` may be anywhere: if it is not on the store's file system it is copied
    next to ``dest`` first. Returns the manifest written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(assembled).st_dev != os.stat(dest.parent).st_dev:
        staging = incoming_dir(dest)
        shutil.rmtree(staging)
        shutil.copytree(assembled, staging, symlinks=True)
        shutil.rmtree(assembled, ignore_errors=True)
        assembled = staging
    files, size = tree_size(assembled)
    manifest = {**manifest, "name": dest.name, "files": files, "bytes": size, "created_at": f.now_iso()}
    f.write_json_atomic(assembled / MANIFEST, manifest)
    old = None
    if dest.exists():
        old = dest.parent / f".replaced-{dest.name}-{os.getpid()}"
        os.rename(dest, old)
    os.rename(assembled, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return manifest
