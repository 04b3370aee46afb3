"""Dashboard sessions against a real brain: a key is traded once for an
HttpOnly cookie; the cookie works like the key (same roles), changes need the
CSRF header, and revoking the key or signing out ends the session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cluster import Cluster

CSRF = {"X-Tossit-CSRF": "1"}


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("sessions"), nodes=3, replicas=2)
    c.start()
    yield c
    c.stop()


def browser(cl: Cluster) -> httpx.Client:
    """A client with a cookie jar and no Authorization header, like a browser."""
    return httpx.Client(base_url=cl.url, timeout=30, verify=cl.verify)


def new_key(cl: Cluster, role: str) -> str:
    resp = cl.http.post("/api/keys", json={"name": f"web {role}", "role": role})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["secret"])


def sign_in(b: httpx.Client, secret: str) -> httpx.Response:
    return b.post("/api/session", json={"key": secret}, headers=CSRF)


def test_sign_in_sets_a_strict_httponly_cookie_that_works_like_the_key(cl: Cluster) -> None:
    file_id = cl.upload("web.txt", b"hello web")["id"]
    with browser(cl) as b:
        assert b.get("/api/files").status_code == 401
        bad = sign_in(b, "x" * 40)
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        # Without the CSRF header no cookie is handed out, whatever the key.
        no_csrf = b.post("/api/session", json={"key": cl.admin_key})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
        assert "set-cookie" not in no_csrf.headers

        resp = sign_in(b, cl.admin_key)
        assert resp.status_code == 200 and resp.json()["role"] == "admin"
        cookie = resp.headers["set-cookie"].lower()
        assert "tossit_session=" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie and "path=/" in cookie
        assert cl.admin_key.lower() not in cookie  # the key itself never goes to the page
        assert b.get("/api/keys/me").json()["role"] == "admin"
        assert b.get(f"/api/files/{file_id}/download").content == b"hello web"

        # A change with the cookie needs the CSRF header: nothing happens without it.
        resp = b.delete(f"/api/files/{file_id}")
        assert resp.status_code == 403 and resp.json()["error"] == "csrf"
        assert cl.download(file_id) == b"hello web"
        put = b.put("/api/files/web2.txt", content=b"two", headers=CSRF)
        assert put.status_code == 201
        assert b.delete(f"/api/files/{file_id}", headers=CSRF).status_code == 200
        assert cl.http.get(f"/api/files/{file_id}").status_code == 404


def test_a_readonly_session_keeps_the_readonly_role(cl: Cluster) -> None:
    file_id = cl.upload("ro-web.txt", b"keep")["id"]
    with browser(cl) as b:
        assert sign_in(b, new_key(cl, "readonly")).json()["role"] == "readonly"
        assert b.get("/api/files").status_code == 200
        resp = b.delete(f"/api/files/{file_id}", headers=CSRF)
        assert resp.status_code == 403 and resp.json()["error"] == "forbidden"
        assert b.post(f"/api/nodes/{cl.node_id(0)}/drain", headers=CSRF).status_code == 403
    assert cl.download(file_id) == b"keep"


def test_sign_out_and_revocation_end_the_session(cl: Cluster) -> None:
    secret = new_key(cl, "readwrite")
    with browser(cl) as b, browser(cl) as other:
        sign_in(b, secret)
        sign_in(other, secret)
        token = b.cookies["tossit_session"]
        assert b.delete("/api/session").status_code == 204
        assert "tossit_session" not in b.cookies
        # The old token is dead on the server too, not only forgotten by the browser.
        stolen = browser(cl)
        stolen.cookies.set("tossit_session", token)
        resp = stolen.get("/api/files")
        assert resp.status_code == 401 and "sign in again" in resp.json()["message"]
        stolen.close()
        # The other session of the same key lives until the key is revoked.
        assert other.get("/api/files").status_code == 200
        key_id = other.get("/api/keys/me").json()["id"]
        assert cl.http.delete(f"/api/keys/{key_id}").status_code == 200
        resp = other.get("/api/files")
        assert resp.status_code == 401 and "revoked" in resp.json()["message"]


def test_sessions_survive_a_brain_restart(cl: Cluster) -> None:
    with browser(cl) as b:
        sign_in(b, cl.admin_key)
        cl.stop_brain()
        cl.start_brain()
        assert b.get("/api/keys/me").status_code == 200


def test_behind_a_tls_proxy_the_cookie_is_secure(cl: Cluster) -> None:
    # The test talks to the brain from 127.0.0.1, the default trusted proxy: a
    # proxy that terminated HTTPS says so with X-Forwarded-Proto.
    with browser(cl) as b:
        plain = sign_in(b, cl.admin_key).headers["set-cookie"].lower()
        assert "; secure" not in plain  # plain HTTP: a Secure cookie would never return
        proxied = b.post("/api/session", json={"key": cl.admin_key},
                         headers={**CSRF, "X-Forwarded-Proto": "https"})
        assert proxied.status_code == 200
        assert "; secure" in proxied.headers["set-cookie"].lower()


def test_untrusted_forwarded_headers_are_ignored(tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    c = Cluster(tmp_path_factory.mktemp("noproxy"), nodes=1, replicas=1,
                brain_args=["--trusted-proxies", ""])
    c.start()
    try:
        with browser(c) as b:
            resp = b.post("/api/session", json={"key": c.admin_key},
                          headers={**CSRF, "X-Forwarded-Proto": "https"})
            assert resp.status_code == 200
            assert "; secure" not in resp.headers["set-cookie"].lower()
    finally:
        c.stop()
