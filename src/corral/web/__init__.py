"""The browser UI: server-rendered pages over the services, with a little JavaScript.

Pages call the services the way the API routes do (never the API itself), sign users
in with a session cookie, and check a CSRF token on every form. Nothing imports this
package except the app factory, which mounts it with ``install``.
"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the pages and their static files on the app."""
    from corral.web import pages

    for router in pages.routers():
        app.include_router(router)
