"""Running an ASGI app under uvicorn with the settings every TossIt server shares."""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(app: Any, host: str, port: int, log_level: str) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get a few seconds to finish."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
        log_config=None,
    )
    server = uvicorn.Server(config)
    logging.getLogger("tossit").info("listening on http://%s:%d", host, port)
    server.run()
