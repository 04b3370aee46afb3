"""The brain's downloads and raw uploads served without FastAPI's routing answer
exactly as FastAPI's routes do (``tossit.brain.api.hot_routes``).

Each request is sent as it is (the hot path) and again with an extra query
parameter, which the hot path leaves to FastAPI and FastAPI ignores: status,
headers and bytes must be the same, for whole files, ranges, bad ranges, a
missing file, uploads good and bad, and every kind of bad key. (The node's hot
routes have an in-process test of the same kind: tests/unit/test_node_hot_routes.py.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from cluster import Cluster
from tossit.brain.api.hot_routes import HotRoutes
from tossit.brain.app import create_app
from tossit.brain.forward import ForwardToLeader
from tossit.brain.metrics import RequestLatency
from tossit.config import BrainSettings

DOWNLOAD_ROUTE = '{method="GET",route="/api/files/{file_id}/download"}'
UPLOAD_ROUTE = '{method="PUT",route="/api/files/{name:anypath}"}'


def _counted(c: Cluster, labels: str) -> float:
    """The latency histogram's count for a route template."""
    text = c.http.get("/metrics").text
    found = re.search(r"^tossit_http_request_duration_seconds_count"
                      + re.escape(labels) + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _answer(resp: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in resp.headers.items() if k not in ("date",)}
    return resp.status_code, headers, resp.content


def test_hot_downloads_answer_as_fastapi_does(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster(nodes=3, replicas=2, chunk_size="256KiB")
    small, big = os.urandom(1000), os.urandom(600_000)  # one chunk; three chunks
    ids = [c.upload(name, data)["id"] for name, data in (("a/small.txt", small),
                                                         ("big.bin", big))]
    etag = c.http.get(f"/api/files/{ids[1]}").json()["sha256"]
    readonly = c.http.post("/api/keys", json={"name": "reader", "role": "readonly"}).json()
    keys = {"admin": c.admin_key, "readonly": readonly["secret"], "wrong": "x" * 40}
    cases: list[tuple[str | None, int, dict[str, str]]] = []
    for file_id in ids:
        cases += [
            ("admin", file_id, {}),
            ("admin", file_id, {"Range": "bytes=0-99"}),
            ("admin", file_id, {"Range": "bytes=-10"}),
            ("admin", file_id, {"Range": "bytes=262000-263000"}),  # across chunks
            ("admin", file_id, {"Range": "bytes=9000000-"}),  # 416
            ("admin", file_id, {"Range": "pages=1"}),  # 400
            ("readonly", file_id, {"Range": "bytes=5-"}),
            ("wrong", file_id, {}),  # 401
            (None, file_id, {}),  # 401: no key
        ]
    cases += [
        ("admin", ids[1], {"Range": "bytes=0-9", "If-Range": '"not-the-etag"'}),  # whole
        ("admin", ids[1], {"Range": "bytes=0-9", "If-Range": f'"{etag}"'}),  # 206
        ("admin", 2**31 - 1, {}),  # 404
        ("admin", 999_999, {"Authorization": "Basic abc"}),  # 401: not a bearer key
    ]
    client = httpx.Client(base_url=c.url, timeout=30)
    before = _counted(c, DOWNLOAD_ROUTE)
    statuses = []
    for who, file_id, headers in cases:
        if who is not None and "Authorization" not in headers:
            headers = {**headers, "Authorization": f"Bearer {keys[who]}"}
        path = f"/api/files/{file_id}/download"
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b""}
        assert HotRoutes.download_id(scope) == file_id
        assert HotRoutes.download_id({**scope, "query_string": b"x=1"}) is None
        hot = _answer(client.get(path, headers=headers))
        cold = _answer(client.get(path, params={"x": "1"}, headers=headers))
        assert hot == cold, (who, file_id, headers)
        statuses.append(hot[0])
    # The right answers, not only the same ones.
    small_ones = [200, 206, 206, 416, 416, 400, 206, 401, 401]  # 1000 bytes: no 262000
    big_ones = [200, 206, 206, 206, 416, 400, 206, 401, 401]
    assert statuses == small_ones + big_ones + [200, 206, 404, 401]
    assert client.get(f"/api/files/{ids[1]}/download", headers={
        "Authorization": f"Bearer {c.admin_key}", "Range": "bytes=262000-263000"},
    ).content == big[262000:263001]
    assert client.get(f"/api/files/{ids[0]}/download", headers={
        "Authorization": f"Bearer {keys['readonly']}"}).content == small
    # Both paths are measured under the route's template.
    assert _counted(c, DOWNLOAD_ROUTE) - before >= 2 * len(cases)


def test_hot_uploads_answer_as_fastapi_does(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster(nodes=3, replicas=2, chunk_size="256KiB")
    readonly = c.http.post("/api/keys", json={"name": "reader", "role": "readonly"}).json()
    admin = {"Authorization": f"Bearer {c.admin_key}"}
    # (name, headers, body, expected status): each sent twice, hot and cold, under
    # names that differ by a suffix so both make a new file.
    cases: list[tuple[str, dict[str, str], bytes, int]] = [
        ("a/one.txt", admin, b"hello", 201),
        ("big.bin", admin, os.urandom(600_000), 201),  # three chunks
        ("empty", admin, b"", 201),
        ("typed.json", {**admin, "Content-Type": "application/json"}, b"{}", 201),
        ("caf\u00e9 \u2014 r\u00e9sum\u00e9.txt", admin, b"accents", 201),
        ("dir//up", admin, b"x", 400),  # a bad name: an empty segment
        ("n" * 1030, admin, b"x", 400),  # a bad name: too long
        ("ro.txt", {"Authorization": f"Bearer {readonly['secret']}"}, b"x", 403),
        ("nokey.txt", {}, b"x", 401),
        ("wrong.txt", {"Authorization": "Bearer " + "y" * 40}, b"x", 401),
    ]
    client = httpx.Client(base_url=c.url, timeout=30)
    before = _counted(c, UPLOAD_ROUTE)
    for name, headers, body, status in cases:
        scope = {"type": "http", "method": "PUT", "path": f"/api/files/{name}-hot",
                 "query_string": b""}
        assert HotRoutes.upload_name(scope) == f"{name}-hot"
        assert HotRoutes.upload_name({**scope, "query_string": b"x=1"}) is None
        hot = client.put(f"/api/files/{name}-hot", content=body, headers=headers)
        cold = client.put(f"/api/files/{name}-cold", params={"x": "1"}, content=body,
                          headers=headers)
        assert hot.status_code == cold.status_code == status, (name, hot.text, cold.text)
        if status != 201:
            assert hot.content == cold.content, name
            continue
        # The same answer but for what differs between the two files.
        one, other = hot.json(), cold.json()
        assert one["name"] == f"{name}-hot" and other["name"] == f"{name}-cold"
        differ = {"id", "name", "created", "chunks_detail", "replication"}
        assert {k: v for k, v in one.items() if k not in differ} == {
            k: v for k, v in other.items() if k not in differ}, name
        assert list(one) == list(other)  # the same fields in the same order
        assert hot.headers["location"] == f"/api/files/{one['id']}"
        assert cold.headers["location"] == f"/api/files/{other['id']}"
        assert {k for k in hot.headers if k != "date"} == {k for k in cold.headers
                                                           if k != "date"}
        assert c.download(one["id"]) == body
    assert _counted(c, UPLOAD_ROUTE) - before >= 2 * len(cases)


def test_anything_but_a_plain_download_or_upload_is_left_to_fastapi() -> None:
    def scope(method: str, path: str, query: bytes = b"") -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "query_string": query}

    assert HotRoutes.download_id(scope("GET", "/api/files/12/download")) == 12
    for s in (scope("HEAD", "/api/files/12/download"), scope("PUT", "/api/files/12/download"),
              scope("GET", "/api/files/12/download", b"a=1"),
              scope("GET", "/api/files/012/download"), scope("GET", "/api/files/0/download"),
              scope("GET", f"/api/files/{2**31}/download"),
              scope("GET", "/api/files/12345678901/download"),
              scope("GET", "/api/files/-1/download"), scope("GET", "/api/files/1 /download"),
              scope("GET", "/api/files/\u0661/download"),  # an Arabic-Indic digit
              scope("GET", "/api/files//download"), scope("GET", "/api/files/12"),
              scope("GET", "/api/files/12/download/")):
        assert HotRoutes.download_id(s) is None, s
    assert HotRoutes.upload_name(scope("PUT", "/api/files/a/b c.txt")) == "a/b c.txt"
    for s in (scope("PUT", "/api/files/"), scope("PUT", "/api/files/a\nb"),
              scope("PUT", "/api/files/a", b"on_conflict=fail"), scope("POST", "/api/files/a"),
              scope("PUT", "/api/filesx/a"), scope("PUT", "/api/uploads/1/parts/1")):
        assert HotRoutes.upload_name(s) is None, s


def test_the_hot_routes_run_inside_the_forwarder_and_the_metrics(tmp_path: Path) -> None:
    """The forwarder sees every request first (a follower passes uploads to the
    leader), and the latency middleware measures the hot paths too."""
    app = create_app(BrainSettings(data_dir=tmp_path))
    order: list[object] = [m.cls for m in app.user_middleware]  # outermost first
    assert order.index(ForwardToLeader) < order.index(RequestLatency) < order.index(
        HotRoutes)
