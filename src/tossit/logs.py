"""Logging set-up shared by the processes: one line per event, to stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str, role: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log costs ~10% of small-request throughput; errors still log.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
