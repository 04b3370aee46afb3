"""/docs on the brain and the nodes: served from the package (no CDN), under a
Content-Security-Policy, open without a key, and off when asked."""

from __future__ import annotations

from typing import Any

import httpx

from cluster import Cluster


def test_docs_come_from_the_package_with_a_csp(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=1, replicas=1)
    for base in (c.url, f"http://127.0.0.1:{c.node_ports[0]}"):
        page = httpx.get(f"{base}/docs", timeout=10)  # no key, no signature
        assert page.status_code == 200, (base, page.text)
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "<script>" not in page.text and "cdn" not in page.text.lower()
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                      "/docs/init.js"):
            got = httpx.get(f"{base}{asset}", timeout=10)
            assert got.status_code == 200 and len(got.content) > 100, (base, asset)
        # The assets prefix opens nothing else on a node.
        sneaky = httpx.get(f"{base}/docs/assets/../inventory", timeout=10)
        assert sneaky.status_code in (401, 404), sneaky.text


def test_docs_can_be_turned_off(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=1, replicas=1, brain_env={"TOSSIT_API_DOCS": "false"})
    assert httpx.get(f"{c.url}/docs", timeout=10).status_code == 404
    assert httpx.get(f"{c.url}/docs/assets/swagger-ui.css", timeout=10).status_code == 404
    assert c.http.get("/api/status").status_code == 200
