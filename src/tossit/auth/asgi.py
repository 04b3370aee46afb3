"""ASGI middleware: only requests signed with the cluster secret get through.

Used by the node for everything except its health probe, metrics and the
OpenAPI description (none of which reveals a chunk). Checked before the body is
read, so a forged upload costs the node nothing but the headers.
"""

from __future__ import annotations

import json
from typing import Any

from tossit.auth.mac import EMPTY_SHA256, MacError, Verifier

Scope = dict[str, Any]
_BODYLESS = {"GET", "HEAD", "DELETE", "OPTIONS"}


class SignedRequests:
    def __init__(self, app: Any, verifier: Verifier, open_paths: frozenset[str],
                 open_prefix: str | None = None) -> None:
        """``open_paths`` and anything under ``open_prefix`` need no signature."""
        self.app = app
        self.verifier = verifier
        self.open_paths = open_paths
        self.open_prefix = open_prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths or (
                self.open_prefix and path.startswith(self.open_prefix) and ".." not in path):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            sender, digest = self.verifier.verify(
                scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers)
            if scope["method"] in _BODYLESS and digest != EMPTY_SHA256:
                raise MacError("a bodyless request must sign the empty body")
        except MacError as exc:
            await _unauthorized(send, str(exc))
            return
        state = scope.setdefault("state", {})
        state["peer"] = sender
        state["content_sha256"] = digest
        await self.app(scope, receive, send)


async def _unauthorized(send: Any, message: str) -> None:
    body = json.dumps({"error": "unauthorized", "message": message}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
