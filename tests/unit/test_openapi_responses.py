"""The OpenAPI description documents every answer's body (issue 11).

A route without a response schema is a blind spot: the fuzzer cannot check its
bodies (tests/integration/test_fuzz.py) and a client cannot be generated from
it. This reads the brain's schema in-process (no server) and asks, for every
operation: each success has a schema that says something (a JSON model, or the
bytes, text or event stream it sends), and each error is the one error body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tossit.brain.app import create_app
from tossit.config import BrainSettings

METHODS = ("get", "post", "put", "delete")
ERROR_REF = "#/components/schemas/ErrorBody"
# Answers that are not JSON, with the media type they are documented with.
NOT_JSON = {
    ("get", "/api/files/{file_id}/download"): "*/*",
    ("get", "/api/stream"): "text/event-stream",
    ("get", "/api/join/ca"): "text/plain",
}
# Probes answer 503 with a body of their own (what is wrong), not an error code.
OWN_503 = {("get", "/health"): "Unhealthy", ("get", "/ready"): "Readiness"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(BrainSettings(data_dir=Path(tmp_path_factory.mktemp("brain"))))
    return app.openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in schema["paths"].items()
            for method, op in ops.items() if method in METHODS]


def test_the_schema_has_the_public_routes(schema: dict[str, Any]) -> None:
    found = {(m, p) for m, p, _ in operations(schema)}
    for expected in [("get", "/api/files"), ("put", "/api/files/{name}"),
                     ("delete", "/api/files/{file_id}"), ("get", "/api/status"),
                     ("get", "/api/nodes"), ("post", "/api/keys"), ("get", "/api/trash")]:
        assert expected in found
    assert len(found) >= 40


def test_every_success_has_a_body_schema(schema: dict[str, Any]) -> None:
    missing = []
    for method, path, op in operations(schema):
        for status, answer in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = answer.get("content", {})
            media = NOT_JSON.get((method, path), "application/json")
            body = content.get(media, {}).get("schema") or {}
            if not body.get("$ref") and not body.get("type"):
                missing.append(f"{method.upper()} {path} {status}")
    assert missing == []


def test_json_lists_name_their_items(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        ok = op["responses"].get("200", {}).get("content", {}).get("application/json")
        if ok and ok["schema"].get("type") == "array":
            items = ok["schema"]["items"]
            assert items.get("$ref") or items.get("anyOf"), f"{method} {path}"


def test_every_error_is_the_error_body(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        for status, answer in op["responses"].items():
            if status[0] not in "45" or status == "422":
                continue
            body = answer.get("content", {}).get("application/json", {}).get("schema", {})
            own = OWN_503.get((method, path)) if status == "503" else None
            expected = f"#/components/schemas/{own}" if own else ERROR_REF
            assert body.get("$ref") == expected, f"{method.upper()} {path} {status}"


def test_state_fields_are_enums(schema: dict[str, Any]) -> None:
    """States are documented with their words (tossit.brain.states), not as any string."""
    models = schema["components"]["schemas"]
    for model, field, enum in [("Node", "state", "NodeState"),
                               ("Replication", "state", "ReplicationState"),
                               ("Event", "kind", "EventKind"), ("Key", "state", "KeyState"),
                               ("JoinToken", "state", "JoinTokenState")]:
        assert models[model]["properties"][field] == {"$ref": f"#/components/schemas/{enum}"}
    assert "dead" in models["NodeState"]["enum"]
