"""Model Download runner: ``python -m corral.backends.local.download``.

    python -m corral.backends.local.download --source SOURCE --dest DIR [--revision REV]
        [--project P]

``SOURCE`` is a Hugging Face repository (``org/model``: ``huggingface_hub.snapshot_download``,
token from ``HF_TOKEN``, endpoint from ``HF_ENDPOINT``), an ``http(s)://`` URL (one file,
streamed with httpx) or an ``s3://bucket/key`` URL (needs boto3; credentials from the
usual ``AWS_*`` variables). The files are assembled in a hidden directory next to
``DIR`` and renamed to ``DIR`` with a ``corral-model.json`` manifest only once complete
(``modelstore.install``), so the store never shows half a model.

Progress (``bytes_done``, ``bytes_total`` when known, ``files_done``, ``files_total``) is
published about once a second through ``files.report_progress``; the backend shows it
as "downloading: 120 MB of 400 MB". The registered model is left as the job's result.
Exit code 0 on success, 1 on failure; the last line of the output says why, e.g.
"download failed: HTTP 404 Not Found for https://..." (see ``describe_error``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from corral.backends.local import files as f
from corral.backends.local import modelstore

REPORT_EVERY_S = 1.0


class Progress:
    """Publishes progress at most every REPORT_EVERY_S (and on demand)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {"phase": "downloading", "bytes_done": 0}
        self.last = 0.0

    def update(self, force: bool = False, **values: Any) -> None:
        self.values.update(values)
        now = time.monotonic()
        if force or now - self.last >= REPORT_EVERY_S:
            self.last = now
            f.report_progress(dict(self.values))


def download_http(url: str, into: Path, progress: Progress) -> None:
    import httpx

    with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, read=300.0)) as response:
        response.raise_for_status()
        total = int(response.headers.get("content-length") or 0) or None
        name = _filename(response.headers.get("content-disposition"), str(response.url))
        done = 0
        progress.update(force=True, bytes_total=total, files_total=1, files_done=0)
        with open(into / name, "wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress.update(bytes_done=done)
        if total is not None and done != total:
            raise OSError(f"the server sent {done} bytes of {total}")
        progress.update(force=True, bytes_done=done, bytes_total=total or done, files_done=1)


def _filename(disposition: str | None, url: str) -> str:
    if disposition:
        match = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition)
        if match:
            candidate = os.path.basename(unquote(match.group(1)))
            if candidate not in ("", ".", ".."):
                return candidate
    candidate = os.path.basename(unquote(urlparse(url).path))
    return candidate if candidate not in ("", ".", "..") else "model"


def download_huggingface(repo: str, revision: str | None, into: Path, progress: Progress) -> None:
    import huggingface_hub

    token = os.environ.get("HF_TOKEN") or None
    total, count = _hf_total(repo, revision, token)
    progress.update(force=True, bytes_total=total, files_total=count)
    finished = threading.Event()

    def watch() -> None:  # bytes on disk so far, incomplete files included
        while not finished.wait(REPORT_EVERY_S):
            _files, size = modelstore.tree_size(into)
            progress.update(force=True, bytes_done=size)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        huggingface_hub.snapshot_download(repo_id=repo, revision=revision, local_dir=into, token=token)
    finally:
        finished.set()
        watcher.join()
    shutil.rmtree(into / ".cache", ignore_errors=True)  # huggingface_hub's resume metadata
    files, size = modelstore.tree_size(into)
    progress.update(force=True, bytes_done=size, bytes_total=total or size, files_done=files)


def _hf_total(repo: str, revision: str | None, token: str | None) -> tuple[int | None, int | None]:
    """Total size and file count of a repo, when the hub tells (best effort)."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo, revision=revision, token=token, files_metadata=True)
        sizes = [s.size or 0 for s in info.siblings or []]
        return (sum(sizes) or None), len(sizes) or None
    except Exception:  # noqa: BLE001 - progress without a total is still progress
        return None, None


def download_s3(url: str, into: Path, progress: Progress) -> None:
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError:
        raise OSError("s3:// sources need boto3 on the host (pip install boto3)") from None
    parsed = urlparse(url)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    client = boto3.client("s3")
    objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
               for o in page.get("Contents", [])]
    if not objects:
        raise OSError(f"nothing at {url}")
    total = sum(o["Size"] for o in objects)
    done = 0
    progress.update(force=True, bytes_total=total, files_total=len(objects), files_done=0)
    base = prefix if len(objects) > 1 else os.path.dirname(prefix)
    for number, obj in enumerate(objects, 1):
        relative = os.path.relpath(obj["Key"], base) if base else obj["Key"]
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)

        def count(n: int) -> None:
            nonlocal done
            done += n
            progress.update(bytes_done=done)

        client.download_file(bucket, obj["Key"], str(target), Callback=count)
        progress.update(files_done=number)
    progress.update(force=True, bytes_done=done)


def run(source: str, dest: Path, revision: str | None, project: str | None) -> dict[str, Any]:
    progress = Progress()
    assembled = modelstore.incoming_dir(dest)
    try:
        if source.startswith(("http://", "https://")):
            download_http(source, assembled, progress)
        elif source.startswith("s3://"):
            download_s3(source, assembled, progress)
        else:
            download_huggingface(source, revision, assembled, progress)
        manifest = modelstore.install(assembled, dest, {
            "project": project, "kind": "download", "source": source, "revision": revision,
            "workload_id": _int_env("CORRAL_WORKLOAD_ID"), "component_id": _int_env("CORRAL_COMPONENT_ID"),
        })
    except BaseException:
        shutil.rmtree(assembled, ignore_errors=True)
        raise
    progress.update(force=True, phase="downloaded")
    result = modelstore.result_of(manifest, dest)
    f.write_result(result)
    return result


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def describe_error(exc: BaseException) -> str:
    """What went wrong, on one line (it becomes the Failed reason): for HTTP, the status and
    the URL ("HTTP 404 Not Found for https://..."); for a connection, the host and why."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency of Corral
        httpx = None  # type: ignore[assignment]
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        phrase = _http_phrase(response.status_code) or response.reason_phrase  # the standard words first
        return f"HTTP {response.status_code}{' ' + phrase if phrase else ''} for {_safe_url(str(exc.request.url))}"
    if httpx is not None and isinstance(exc, httpx.RequestError):
        try:
            url = exc.request.url
            where = f"{url.host}:{url.port}" if url.port else str(url.host)
            target = _safe_url(str(url))
        except RuntimeError:  # no request attached
            where, target = "the server", ""
        what = "timed out reaching" if isinstance(exc, httpx.TimeoutException) else "cannot reach"
        why = _one_line(str(exc)) or type(exc).__name__
        return f"{what} {where}: {why}" + (f" ({target})" if target else "")
    return f"{type(exc).__name__}: {_one_line(str(exc))}"


def _http_phrase(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _safe_url(url: str) -> str:
    """The URL without a user name or password."""
    parsed = urlparse(url)
    if parsed.username or parsed.password:
        host = parsed.hostname or ""
        netloc = f"{host}:{parsed.port}" if parsed.port else host
        return parsed._replace(netloc=netloc).geturl()
    return url


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="corral-download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--dest", required=True, type=Path)
    parser.add_argument("--revision")
    parser.add_argument("--project")
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through run(), which removes the partial files

    signal.signal(signal.SIGTERM, stop)
    print(f"downloading {args.source} to {args.dest}", flush=True)
    try:
        result = run(args.source, args.dest, args.revision, args.project)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of output is the Failed reason
        print(f"download failed: {describe_error(exc)}", file=sys.stderr, flush=True)
        return 1
    print(f"downloaded {result['files']} file(s), {result['bytes']} bytes, as model {result['model']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
