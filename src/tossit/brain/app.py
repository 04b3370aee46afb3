"""The brain's ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tossit import __version__
from tossit.brain.api import cluster, files, home, nodes
from tossit.brain.service import Brain
from tossit.config import BrainSettings
from tossit.errors import install_error_handlers


def create_app(settings: BrainSettings) -> FastAPI:
    brain = Brain(settings)

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
    app.include_router(files.router)
    app.include_router(nodes.router)
    app.include_router(cluster.router)
    app.include_router(home.router)
    return app
