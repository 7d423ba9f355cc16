"""What every API route shares: strict JSON bodies and range-checked ids.

JSON may carry text that no database stores: a lone surrogate (``"\\ud800"``) cannot be
encoded at all, and PostgreSQL refuses NUL in text. Both are refused here, for every
field of every body (and NUL in every path and query parameter), as 422 in the one error
shape, instead of failing deep in a query.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

# Ids are the database's 64-bit integers: anything outside 1..2^63-1 names nothing.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def _nul_at(value: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Where a NUL character is in the parsed body (a key or a value), or None."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return (*loc, key)
            found = _nul_at(item, (*loc, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, (*loc, index))
            if found:
                return found
    return None


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson refuses lone surrogates (json.loads would accept them) and is faster.
            self._json = orjson.loads(await self.body())
        return self._json


class ApiRoute(APIRoute):
    """The route class of every API router."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            # %00 decodes to NUL in a path or query parameter just as well.
            for where, items in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
                for key, value in items:
                    if isinstance(value, str) and "\x00" in value:
                        raise RequestValidationError([{"type": "string_nul", "loc": (where, key), "input": None,
                                                       "msg": "must not contain NUL characters"}])
            strict = _StrictJsonRequest(request.scope, request.receive)
            # JSON can only spell NUL as an escape: a body without one has none. (Checked
            # here: FastAPI turns any other error met while parsing into a vague 400.)
            if self.body_field is not None and b"\\u0000" in await strict.body():
                try:
                    where = _nul_at(await strict.json(), ("body",))
                except orjson.JSONDecodeError:
                    where = None  # the handler reports the broken JSON itself
                if where is not None:
                    raise RequestValidationError([{"type": "string_nul", "loc": where, "input": None,
                                                   "msg": "must not contain NUL characters"}])
            return await handler(strict)

        return handle
