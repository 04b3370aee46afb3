"""TLS for the clients (CLI, brain, node): verify servers against a CA bundle.

A home lab rarely has certificates from a public CA; ``tls_ca`` points at the
cluster's own CA so that verification stays on instead of being switched off.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(ca: Path | None) -> ssl.SSLContext:
    """Verify certificates and host names against ``ca`` (or the system store)."""
    return ssl.create_default_context(cafile=str(ca) if ca else None)
