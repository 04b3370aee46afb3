"""The brain's ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from tossit import __version__
from tossit.apidocs import install_docs
from tossit.auth.keys import Role
from tossit.brain.api import (
    cluster,
    dashboard,
    files,
    join,
    keys,
    nodes,
    scrub,
    session,
    stream,
    trash,
    uploads,
)
from tossit.brain.api.access import ERROR_RESPONSES, SECURITY_SCHEME, Access
from tossit.brain.api.hot_routes import HotRoutes
from tossit.brain.forward import ForwardToLeader
from tossit.brain.metrics import RequestLatency
from tossit.brain.service import Brain
from tossit.config import BrainSettings
from tossit.errors import ErrorBody, install_error_handlers

# The access rules' errors (401, 403), documented with the JSON error body.
AUTH_ERRORS = {code: {**spec, "model": ErrorBody} for code, spec in ERROR_RESPONSES.items()}


def create_app(settings: BrainSettings, new_admin_key: bool = False) -> FastAPI:
    brain = Brain(settings, new_admin_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await brain.start()
        try:
            yield
        finally:
            await brain.stop()

    app = FastAPI(
        title="TossIt",
        version=__version__,
        lifespan=lifespan,
        description=(
            "Distributed storage cluster: files are cut into content-addressed chunks, "
            "each replicated on several storage nodes."
        ),
        docs_url=None, redoc_url=None,
    )
    install_docs(app, "TossIt", settings.api_docs)
    app.state.brain = brain
    app.state.feed = stream.LiveFeed(brain)
    app.state.on_exit = app.state.feed.close_all  # called by tossit.serve on SIGTERM
    install_error_handlers(app)
    # Who may call what, declared once per router (tossit.brain.api.access).
    files_access = Access(Role.readwrite)
    app.include_router(files.router, dependencies=[Depends(files_access)],
                       responses=AUTH_ERRORS)
    app.include_router(uploads.router, dependencies=[Depends(Access(Role.readwrite))],
                       responses=AUTH_ERRORS)
    app.include_router(trash.router, responses=AUTH_ERRORS,
                       dependencies=[Depends(Access(Role.readwrite, read=Role.readwrite))])
    app.include_router(nodes.router, dependencies=[Depends(Access(Role.admin))],
                       responses=AUTH_ERRORS)
    app.include_router(cluster.router, dependencies=[Depends(Access(Role.admin))],
                       responses=AUTH_ERRORS)
    app.include_router(scrub.router, dependencies=[Depends(Access(Role.admin))],
                       responses=AUTH_ERRORS)
    app.include_router(stream.router, dependencies=[Depends(Access(Role.readonly))],
                       responses=AUTH_ERRORS)
    app.include_router(keys.me_router, responses={401: AUTH_ERRORS[401]})
    app.include_router(keys.router, responses=AUTH_ERRORS)
    app.include_router(join.router, responses=AUTH_ERRORS)
    app.include_router(join.public)
    app.include_router(session.router)
    app.include_router(nodes.protocol, responses={401: AUTH_ERRORS[401]})
    app.include_router(cluster.public)
    app.include_router(dashboard.router)
    # The last added runs first: the forwarder, the latency metrics, then downloads
    # and uploads served without FastAPI's routing (tossit.brain.api.hot_routes).
    app.add_middleware(HotRoutes, access=files_access, routes={
        (method, r.path): r for r in files.router.routes if isinstance(r, APIRoute)
        for method in r.methods or ()})
    # Latency by route template; inside the forwarder: a request a follower passes
    # on is measured once, by the leader that answers it.
    app.add_middleware(RequestLatency)
    # Several brains on PostgreSQL: a follower passes changes to the leader.
    app.add_middleware(ForwardToLeader, is_leader=lambda: brain.leader,
                       directory=lambda: brain.directory if brain.lock.shared else None,
                       tls_ca=settings.tls_ca)
    _document_security(app)
    return app


def _document_security(app: FastAPI) -> None:
    """Declare the bearer key in the OpenAPI schema for every operation that
    answers 401 for want of one (the check itself is a plain dependency, which
    FastAPI cannot describe)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEME
            for path, ops in schema["paths"].items():
                for op in ops.values():
                    if "401" in op.get("responses", {}) and "node protocol" not in op.get(
                            "tags", []) and path != "/api/session":
                        op["security"] = [{"api_key": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
