"""The image's HEALTHCHECK: the brain is healthy when GET /ready says it takes
writes (enough nodes for the write quorum), a node when GET /health answers.

Plain urllib: the slim image has no curl, and the CLI's start-up costs more."""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from pathlib import Path


def url() -> str:
    """The local URL to ask, from the role the entrypoint recorded."""
    try:
        role = Path("/tmp/tossit-role").read_text().strip()
    except OSError:
        role = "brain"
    if role == "node":
        tls = bool(os.environ.get("TOSSIT_NODE_TLS_CERT"))
        port = os.environ.get("TOSSIT_NODE_PORT", "8081")
        path = "/health"
    else:
        tls = bool(os.environ.get("TOSSIT_TLS_CERT"))
        port = os.environ.get("TOSSIT_PORT", "8000")
        path = "/ready"
    return f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"


def main() -> int:
    # Loopback only: the certificate names the host, not 127.0.0.1.
    ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url(), timeout=4, context=ctx) as resp:
            return 0 if resp.status == 200 else 1
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
