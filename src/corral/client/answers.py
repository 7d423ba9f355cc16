"""From the server's answer to what a client call returns: a model, or ``CorralAPIError``
with the server's code, message and field. One wording whichever way the request went
(corral.client.transport)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from corral.client.errors import CorralAPIError
from corral.client.transport import Answer

M = TypeVar("M", bound=BaseModel)


@contextmanager
def _no_pydantic_plugins() -> Iterator[None]:
    """Build a model's validator without looking for pydantic plugins (observability hooks):
    finding them reads every installed package's metadata, 20-35 ms of a CLI call. Typer
    does the same for the validators of its options."""
    previous = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = previous


def api_error(response: Answer) -> CorralAPIError:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return CorralAPIError(response.status_code, str(error.get("code") or "error"), error["message"],
                              error.get("field"), error.get("details"))
    text = response.text.strip()[:300] or response.reason_phrase
    return CorralAPIError(response.status_code, f"http_{response.status_code}", text)


def _json(response: Answer) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CorralAPIError(response.status_code, "bad_response",
                             f"the server's answer is not JSON: {response.text[:200]!r}") from None


def parse(model: type[M], response: Answer, *, light: bool = False) -> M:
    """``light``: a one-shot process's (CorralClient(light=True)): no pydantic plugins."""
    try:
        with _no_pydantic_plugins() if light else nullcontext():
            return model.model_validate(_json(response))
    except ValidationError as exc:
        raise CorralAPIError(response.status_code, "bad_response",
                             f"unexpected answer from the server for {model.__name__}: {exc}") from None


def parse_list(model: type[M], response: Answer, *, light: bool = False) -> list[M]:
    try:
        with _no_pydantic_plugins() if light else nullcontext():
            return TypeAdapter(list[model]).validate_python(_json(response))  # type: ignore[valid-type]
    except ValidationError as exc:
        raise CorralAPIError(response.status_code, "bad_response",
                             f"unexpected answer from the server for a list of {model.__name__}: {exc}") from None
