"""Where the CLI keeps the server and token of `corral login`.

The file is ~/.config/corral/config.json (or $XDG_CONFIG_HOME/corral/config.json, or
$CORRAL_CONFIG), owner-only (0600). CORRAL_SERVER and CORRAL_TOKEN override it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.cli.output import fail
from corral.client import CorralClient, normalise_server

CONFIG_ENV = "CORRAL_CONFIG"
SERVER_ENV = "CORRAL_SERVER"
TOKEN_ENV = "CORRAL_TOKEN"


def config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.json"


def load() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        fail(f"cannot read the CLI configuration {path}: {exc}")
    if not isinstance(data, dict):
        fail(f"the CLI configuration {path} is not a JSON object")
    return data


def save(data: dict[str, Any]) -> Path:
    """Write the configuration owner-only, atomically (it holds a token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def forget_token() -> tuple[Path, str | None] | None:
    """Remove the stored token; returns (the file, its server) if there was one."""
    path = config_path()
    data = load()
    if "token" not in data:
        return None
    data.pop("token")
    if data:
        save(data)
    else:
        path.unlink(missing_ok=True)
    return path, data.get("server")


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str

    def __repr__(self) -> str:  # never show the token
        return f"Credentials(server={self.server!r})"


def credentials() -> Credentials:
    """The server and token to use: environment first, then the configuration file."""
    data = load()
    server = os.environ.get(SERVER_ENV) or data.get("server")
    token = os.environ.get(TOKEN_ENV) or data.get("token")
    if not server or not token:
        fail("not logged in: run `corral login --server URL --token-file FILE` "
             f"(or set {SERVER_ENV} and {TOKEN_ENV})")
    try:
        return Credentials(normalise_server(server), token.strip())
    except ValueError as exc:
        fail(f"bad server URL {server!r}: {exc}")


def client() -> CorralClient:
    creds = credentials()
    try:
        return CorralClient(creds.server, creds.token, light=True)  # one call, one process: no httpx
    except ValueError as exc:
        fail(str(exc))
