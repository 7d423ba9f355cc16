"""The token a workload's service expects from Corral's proxy.

On a shared host every workload can connect to every port on loopback: a JupyterLab
without a token would run code for anyone who finds its port. So each service is told a
token of its own (``CORRAL_SERVICE_TOKEN`` in its environment, given by the agent with the
workload's secrets), the recipes hand it to the servers Corral starts (JupyterLab's
``JUPYTER_TOKEN``, vLLM's ``VLLM_API_KEY``), and the proxy presents it upstream as
``Authorization: Bearer <token>``; other workloads never learn it. It is derived from the
server's key (HKDF, then HMAC of the workload id), so replicas agree with nothing stored.
After a key rotation, services started before it keep the token they were given: restart
them to be reachable through the proxy again.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from corral.services import keys
from corral.services.keys import SecretKeys

if TYPE_CHECKING:
    from corral.settings import Settings

ENV = "CORRAL_SERVICE_TOKEN"
_PURPOSE = b"corral workload service token"


def service_token(keys: SecretKeys, workload_id: int) -> str:
    key = keys.derive(_PURPOSE)[0]
    return hmac.new(key, f"workload:{workload_id}".encode(), hashlib.sha256).hexdigest()


def proxy_authorization(settings: Settings, workload_id: int) -> str:
    """The ``Authorization`` header the proxy sends to the workload's service."""
    return f"Bearer {service_token(keys.for_settings(settings), workload_id)}"
