"""The brain's ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from tossit import __version__
from tossit.auth.keys import Role
from tossit.brain.api import cluster, files, home, keys, nodes
from tossit.brain.api.access import ERROR_RESPONSES, by_method
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
    )
    app.state.brain = brain
    install_error_handlers(app)
    # Who may call what, declared once per router (tossit.brain.api.access).
    reads_or = {Role.readwrite: [Depends(by_method(Role.readwrite))],
                Role.admin: [Depends(by_method(Role.admin))]}
    app.include_router(files.router, dependencies=reads_or[Role.readwrite],
                       responses=AUTH_ERRORS)
    app.include_router(nodes.router, dependencies=reads_or[Role.admin],
                       responses=AUTH_ERRORS)
    app.include_router(cluster.router, dependencies=reads_or[Role.admin],
                       responses=AUTH_ERRORS)
    app.include_router(keys.me_router, responses={401: AUTH_ERRORS[401]})
    app.include_router(keys.router, responses=AUTH_ERRORS)
    app.include_router(nodes.protocol, responses={401: AUTH_ERRORS[401]})
    app.include_router(cluster.public)
    app.include_router(home.router)
    return app
