"""Who submits: the bearer token of a submission, checked without a thread hop when it can be.

A submission's token is authenticated again, with every other token of its batch, inside
the transaction that writes it (services.submit_batcher): that check is the one that
counts. This one only answers a caller with no or a bad token with 401 before anything
else (before 422 for a bad body, as every route does). A token seen valid recently is not
looked up again here; a token revoked since then is refused by the batch's check.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral.api.deps import Bearer, _bearer
from corral.api.seen_tokens import SeenTokens
from corral.services.errors import Unauthenticated
from corral.services.users import TOKEN_PREFIX, authenticate, hash_token


async def submit_token(request: Request, credentials: Bearer) -> str:
    """The hash of the caller's bearer token; 401 if it is missing or not a valid token."""
    token = _bearer(credentials)
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise Unauthenticated("invalid, expired or revoked token")
    token_hash = hash_token(token)
    seen = SeenTokens.of(request.app.state, "seen_submit_tokens")
    if not await seen.valid(token_hash, lambda: authenticate(request.app.state.engine, token)):
        raise Unauthenticated("invalid, expired or revoked token")
    return token_hash


SubmitToken = Annotated[str, Depends(submit_token)]
