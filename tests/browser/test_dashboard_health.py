"""The health strip, the tab title, the navigation badges, greyed figures while the
brain is unreachable, disabled buttons that say why, and the dashboard on a phone
(touch targets, the chunk map).

The module's cluster (conftest.py: brain + 5 nodes, R=3) goes from healthy to one
node stopped to the brain stopped, in the order of the tests below.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from browser_pages import shot, sign_in
from cluster import Cluster, wait_until

expect = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
).expect

Opener = Any


def put_file(cl: Cluster, name: str, data: bytes) -> dict[str, Any]:
    resp = cl.http.put("/api/files/" + quote(name, safe="/"), content=data)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def make_key(cl: Cluster, role: str) -> dict[str, Any]:
    resp = cl.http.post("/api/keys", json={"name": f"health {role}", "role": role})
    assert resp.status_code == 201, resp.text
    key: dict[str, Any] = resp.json()
    return key


# -- the rules, with made-up inputs (the pure function, in the page) -------------------

CLASSIFY = """async ([status, nodes, connected]) => {
    const m = await import("/ui/health.js");
    const r = m.classify(status, nodes, connected);
    return {level: r.level, word: r.word, next: r.next && r.next.text,
            nav: r.next && r.next.nav, problems: r.problems.map((p) => p.text),
            title: m.titleFor(r, "Nodes"), badges: m.badges(r)};
}"""


def _status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": 3, "write_quorum": 2, "needs_recovery": None,
        "capacity": {"raw": 1000, "used": 100, "free": 900},
        "readiness": {"status": "ready", "nodes_writable": 3, "write_quorum": 2},
        "replication": {"chunks_below_target": 0, "chunks_unavailable": 0, "bytes_at_risk": 0,
                        "waiting_for": []},
        "manifests": {"waiting": 0, "below_target": 0, "deletions_frozen": None},
        "drill": {"last": None}, "repair": {"running": False},
    }
    base.update(over)
    return base


def _node(name: str, state: str = "online", admin: str | None = None,
          chunks: int = 10) -> dict[str, Any]:
    return {"id": name, "name": name, "state": state, "admin_state": admin, "chunk_count": chunks}


def test_the_rules_of_the_health_strip(cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    ok_nodes = [_node("node-1"), _node("node-2"), _node("node-3")]

    def classify(status: dict[str, Any] | None, nodes: list[dict[str, Any]] | None,
                 connected: bool | None = True) -> dict[str, Any]:
        out: dict[str, Any] = page.evaluate(CLASSIFY, [status, nodes, connected])
        return out

    # Until the node list has come, nothing is claimed (it alone shows a node down).
    assert classify(_status(), None)["level"] == "unknown"
    r = classify(_status(), ok_nodes)
    assert r["level"] == "healthy" and r["word"] == "Healthy"
    assert r["next"] == "Nothing to do: 3 copies of every chunk, 3 nodes online"
    assert r["title"] == "Nodes · TossIt" and r["badges"] == {}

    down = [_node("node-1"), _node("node-2", "offline"), _node("node-3", "offline")]
    r = classify(_status(replication={"chunks_below_target": 7, "chunks_unavailable": 0,
                                      "bytes_at_risk": 2048, "waiting_for": [
                                          {"name": "node-2"}, {"name": "node-3"}]}), down)
    assert r["level"] == "degraded"
    assert r["next"] == "2 nodes offline: check node-2, node-3"
    assert r["nav"] == "nodes"
    assert r["problems"][1] == ("7 chunks below 3 copies (2.0 KiB): re-made elsewhere if "
                                "node-2, node-3 stay silent")
    assert r["title"] == "⚠ Degraded · Nodes · TossIt"
    assert r["badges"] == {"nodes": {"count": 2, "level": "degraded"},
                           "overview": {"count": 1, "level": "degraded"}}

    r = classify(_status(), [*ok_nodes[:2], _node("node-3", "online", "draining", 40)])
    assert r["level"] == "degraded" and "node-3 draining: 40 chunks left" in r["next"]
    # A drained node holds nothing: nothing to worry about.
    r = classify(_status(), [*ok_nodes[:2], _node("node-3", "online", "drained", 0)])
    assert r["level"] == "healthy"

    at_risk = [
        (_status(needs_recovery="strangers on the nodes"), "Needs recovery: strangers"),
        (_status(replication={"chunks_below_target": 4, "chunks_unavailable": 4,
                              "bytes_at_risk": 1, "waiting_for": []}),
         "4 chunks have no live copy"),
        (_status(readiness={"status": "not_ready", "reason": "1 storage node can take writes, "
                            "2 needed (write quorum)"}), "Uploads are refused: 1 storage node"),
        (_status(capacity={"raw": 1000, "used": 950, "free": 50}), "Storage 95% full"),
        (_status(manifests={"waiting": 2, "below_target": 0}), "2 manifests not on the nodes"),
        (_status(drill={"last": {"ok": False, "summary": "1 file lost"}}), "fire drill found"),
    ]
    for status, words in at_risk:
        r = classify(status, ok_nodes)
        assert r["level"] == "at-risk", (words, r)
        assert words in r["next"], (words, r)
        assert r["title"].startswith("‼ At risk · ")
    # The most severe first: at risk before degraded, whatever the order found.
    r = classify(_status(needs_recovery="x"), down)
    assert r["level"] == "at-risk" and r["next"].startswith("Needs recovery")
    assert r["badges"]["nodes"] == {"count": 2, "level": "degraded"}
    assert r["badges"]["overview"] == {"count": 1, "level": "at-risk"}

    r = classify(_status(), ok_nodes, False)
    assert r["level"] == "unreachable" and r["word"] == "Brain unreachable"
    assert r["title"] == "✕ Brain unreachable · Nodes · TossIt"
    assert classify(None, [], None)["level"] == "unknown"


_STUCK = {"chunks": 298, "nodes_can_take": 2, "replicas": 3, "why": ["node-3 is dead"],
          "message": "repair is stuck: 298 chunks need a 3rd copy but only 2 nodes can take "
                     "them (node-3 is dead)",
          "advice": "add a node, or bring back node-3", "since": "2026-12-07T20:00:00+00:00"}


def test_suspect_nodes_and_a_stuck_repair_are_never_healthy(cl: Cluster,
                                                            open_page: Opener) -> None:
    """After a brain restart every node is suspect until its first heartbeat: the
    strip said "Healthy — …, 0 nodes online". A repair with nowhere to put the
    copies said "repair is pending"; it says it is stuck and what to do."""
    page, _ = open_page()

    def classify(status: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = page.evaluate(CLASSIFY, [status, nodes, True])
        return out

    r = classify(_status(), [_node("node-1", "suspect"), _node("node-2", "suspect"),
                             _node("node-3", "suspect")])
    assert r["level"] == "degraded", r
    assert r["next"] == ("No node has answered a heartbeat yet (3 suspect: node-1, node-2, "
                         "node-3): usual for a few seconds after the brain starts; if it "
                         "lasts, check them")
    assert r["nav"] == "nodes" and r["badges"] == {"nodes": {"count": 3, "level": "degraded"}}
    r = classify(_status(), [_node("node-1", "suspect"), _node("node-2"), _node("node-3")])
    assert r["level"] == "degraded"
    assert r["next"] == "node-1 is not answering heartbeats (suspect): check it"
    r = classify(_status(), [_node("node-1", "suspect"), _node("node-2", "suspect"),
                             _node("node-3")])
    assert r["next"] == ("2 nodes are not answering heartbeats (suspect): check node-1, "
                         "node-2")
    # A state this page does not know (a newer brain's): not online is not healthy.
    r = classify(_status(), [_node("node-1", "joining"), _node("node-2"), _node("node-3")])
    assert r["level"] == "degraded" and r["next"] == "node-1 is joining: check it"

    # R = 3 on 3 nodes, one dead: the 3rd copies have nowhere to go.
    dead = [_node("node-1"), _node("node-2"), _node("node-3", "dead")]
    rep = {"chunks_below_target": 254, "chunks_unavailable": 0, "bytes_at_risk": 2048,
           "waiting_for": [], "repair_stuck": _STUCK}
    r = classify(_status(replication=rep,
                         manifests={"waiting": 0, "below_target": 2, "deletions_frozen": None}),
                 dead)
    assert r["level"] == "degraded"
    assert r["problems"] == [
        "1 node dead: check node-3",
        "254 chunks below 3 copies (2.0 KiB): repair is stuck — only 2 nodes can take copies, "
        "3 needed (node-3 is dead): add a node, or bring back node-3",
        "2 manifest packs below 3 copies: repair is stuck — only 2 nodes can take copies, "
        "3 needed (node-3 is dead): add a node, or bring back node-3",
    ]
    assert not any("pending" in p or "on it" in p for p in r["problems"])
    # No node at all can take a copy.
    none = {**_STUCK, "nodes_can_take": 0, "why": ["node-1 is full", "node-2 is full"],
            "advice": "add 3 nodes, or free space on node-1 or node-2"}
    r = classify(_status(replication={**rep, "repair_stuck": none}), ok_nodes := [
        _node("node-1"), _node("node-2")])
    assert r["next"] == ("254 chunks below 3 copies (2.0 KiB): repair is stuck — no node can "
                         "take copies (node-1 is full, node-2 is full): add 3 nodes, or free "
                         "space on node-1 or node-2")
    # Not stuck: as before.
    r = classify(_status(replication={**rep, "repair_stuck": None}), ok_nodes)
    assert r["next"].endswith(": repair is pending")


# -- healthy, on a desktop -------------------------------------------------------------


def test_a_healthy_cluster_says_so_on_every_page(cl: Cluster, open_page: Opener,
                                                 artifacts: Path) -> None:
    put_file(cl, "health/sample.bin", os.urandom(600_000))
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    strip = page.locator("#health-strip")
    expect(strip).to_have_attribute("data-level", "healthy")
    expect(page.locator("#health-word")).to_have_text("Healthy")
    expect(page.locator("#health-next")).to_have_text(
        "Nothing to do: 3 copies of every chunk, 5 nodes online")
    expect(page).to_have_title("Overview · TossIt")
    expect(page.locator(".mainnav .nav-alert")).to_have_count(0)
    shot(page, artifacts, "health-healthy")
    for route, title in (("nodes", "Nodes"), ("files", "Files"), ("activity", "Activity")):
        page.locator(f'.mainnav a[data-route="{route}"]').click()
        expect(page).to_have_title(f"{title} · TossIt")
        expect(strip).to_be_visible()
        expect(page.locator("#health-word")).to_have_text("Healthy")


SHOW = """([status, nodes]) => new Promise((done) => {
    // What the stream would bring: the views redraw from it at once.
    const text = (sel) => { const e = document.querySelector(sel); return e && e.textContent; };
    import("/ui/store.js").then((store) => {
        if (status) store.state.status = {...store.state.status, ...status};
        if (nodes) store.state.nodes = nodes;
        if (status) store.emit("status", store.state.status);
        if (nodes) store.emit("nodes", store.state.nodes);
        done({word: text("#health-word"), next: text("#health-next"),
              repair: text("#repair-verdict"), safety: text("section.safety .verdict"),
              room: text("#capacity-room"), short: text("#capacity-short")});
    });
})"""


def test_the_strip_and_the_cards_say_what_the_stream_brings(cl: Cluster,
                                                            open_page: Opener) -> None:
    """The strip redraws when its sentence changes, not only its level ("Healthy
    — …, 0 nodes online" stayed after every node came back); the overview says a
    stuck repair is stuck, and that there is no room at R copies on fewer nodes."""
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    expect(page.locator("#health-next")).to_have_text(
        "Nothing to do: 3 copies of every chunk, 5 nodes online")
    nodes = page.evaluate("async () => (await import('/ui/store.js')).state.nodes")
    shown = page.evaluate(SHOW, [None, nodes[:4]])
    assert shown["word"] == "Healthy"
    assert shown["next"] == "Nothing to do: 3 copies of every chunk, 4 nodes online", shown
    shown = page.evaluate(SHOW, [None, [{**n, "state": "suspect"} for n in nodes]])
    assert shown["word"] == "Degraded", shown
    assert shown["next"].startswith("No node has answered a heartbeat yet (5 suspect"), shown

    status = page.evaluate("async () => (await import('/ui/store.js')).state.status")
    rep = {**status["replication"], "chunks_below_target": 254, "repair_stuck": _STUCK}
    cap = {**status["capacity"], "room": 0, "nodes_with_room": 2,
           "room_fewer_copies": 20 * 2**30}
    man = {**status["manifests"], "below_target": 2, "waiting": 0}
    gone = [*nodes[:2], *({**n, "state": "dead"} for n in nodes[2:])]
    page.goto(cl.url + "/#/overview")
    expect(page.locator("#repair-verdict")).to_be_visible()
    shown = page.evaluate(SHOW, [{"replication": rep, "capacity": cap, "manifests": man,
                                  "repair": {**status["repair"], "running": False}}, gone])
    assert shown["repair"].startswith(
        "Repair is stuck: 298 chunks need a 3rd copy but only 2 nodes can take them "
        "(node-3 is dead). Add a node, or bring back node-3."), shown
    assert "wait for a repair pass" not in shown["repair"]
    assert shown["safety"] == (
        "2 manifest packs have fewer than 3 copies; the repair is stuck: only 2 nodes can "
        "take copies, 3 needed (node-3 is dead): add a node, or bring back node-3. Every "
        "file can still be rebuilt from the nodes."), shown
    assert shown["room"] == "No room at 3 copies", shown
    assert shown["short"] == (
        "Only 2 nodes can take new copies, 3 needed: new files get only 2 copies (room for "
        "about 20.0 GiB more that way). Add a node, or bring back node-2, node-3, node-4."
    ), shown


# -- disabled buttons say why --------------------------------------------------------------


REASONS = """() => [...document.querySelectorAll("#main button:disabled, dialog button:disabled")]
    .filter((b) => b.offsetParent !== null)
    .map((b) => {
        const ids = (b.getAttribute("aria-describedby") || "").split(/\\s+/).filter(Boolean);
        const els = ids.map((id) => document.getElementById(id)).filter(Boolean);
        const shown = els.filter((e) => e.offsetParent !== null && e.getClientRects().length);
        return {label: b.textContent.trim(), describedby: ids.join(" "),
                text: shown.map((e) => e.textContent.trim()).join(" ")};
    })"""


def _reasons(page: Any) -> list[dict[str, str]]:
    found: list[dict[str, str]] = page.evaluate(REASONS)
    for b in found:
        assert b["text"], f"the disabled button {b['label']!r} says why nowhere visible: {b}"
    return found


def test_disabled_buttons_say_why_in_visible_words(cl: Cluster, open_page: Opener,
                                                   artifacts: Path) -> None:
    f = put_file(cl, "health/readonly.txt", b"look, do not touch")
    key = make_key(cl, "readonly")
    page, _ = open_page()
    sign_in(page, key["secret"])

    drill = page.locator("section.safety [data-action=drill]")
    expect(drill).to_be_disabled()
    reason = page.locator("#" + drill.get_attribute("aria-describedby"))
    expect(reason).to_be_visible()
    expect(reason).to_have_text("Needs an admin key to run a fire drill")
    assert [b["text"] for b in _reasons(page)] == ["Needs an admin key to run a fire drill"]

    page.goto(cl.url + "/#/nodes")
    expect(page.locator("#nodes-table tbody tr")).to_have_count(5)
    note = page.locator("#nodes-why")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Drain, Undrain and Remove need an admin key")
    found = _reasons(page)
    assert len(found) == 10, found  # Drain and Remove on each of the 5 rows
    assert {b["describedby"] for b in found} == {"nodes-why"}
    shot(page, artifacts, "health-readonly-nodes")

    page.goto(cl.url + "/#/files?q=health/readonly")
    upload = page.locator("#upload-button")
    expect(upload).to_be_disabled()
    expect(page.locator("#" + upload.get_attribute("aria-describedby"))).to_have_text(
        "Needs a readwrite key to upload or delete files")
    expect(page.locator("#files-table tbody tr")).to_have_count(1)
    found = _reasons(page)
    assert {b["label"] for b in found} >= {"Upload files", "Delete"}, found
    shot(page, artifacts, "health-readonly-files")

    page.goto(f"{cl.url}/#/files/{f['id']}")
    delete = page.locator("#detail-delete")
    expect(delete).to_be_disabled()
    expect(page.locator("#" + delete.get_attribute("aria-describedby"))).to_have_text(
        "Needs a readwrite key to delete files")
    _reasons(page)

    # A dialog's disabled button points at the sentence that says why (admin key).
    page2, _ = open_page()
    sign_in(page2, cl.admin_key)
    page2.goto(cl.url + "/#/nodes")
    page2.locator('#nodes-table tr[data-node="node-0"] [data-action=remove]').click()
    dialog = page2.locator("dialog[open]")
    expect(dialog.locator("#impact-summary")).to_contain_text("cannot be removed now")
    ok = dialog.locator("[data-action=ok]")
    expect(ok).to_be_disabled()
    expect(ok).to_have_attribute("aria-describedby", "impact-summary")
    _reasons(page2)
    dialog.locator("[data-action=cancel]").click()


# -- a phone: touch targets, no sideways scrolling, the chunk map -----------------------------


TOO_SMALL = """() => {
    const out = [];
    const sel = ["a[href]", "button", "input:not([type=hidden])", "select", "textarea",
        "summary", "[tabindex]:not([tabindex='-1'])", "td.cm-cell"].join(", ");
    for (const el of document.querySelectorAll(sel)) {
        if (el.closest("[hidden], .sr-only")) continue;
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height) continue;  // not rendered
        if (r.right <= 0) continue;  // the skip link: off screen until focused
        if (r.width >= 44 && r.height >= 44) continue;
        const name = (el.textContent || el.getAttribute("aria-label") || "").trim();
        out.push(`${el.tagName} #${el.id} .${el.className} "${name.slice(0, 30)}" `
            + `${Math.round(r.width)}x${Math.round(r.height)}`);
    }
    return out;
}"""


@pytest.fixture
def phone(browser: Any, cl: Cluster) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=3,
                              is_mobile=True, has_touch=True, locale="en-US",
                              timezone_id="UTC")
    ctx.set_default_timeout(15000)
    errors: list[str] = []
    page = ctx.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(cl.url + "/")
    yield page
    ctx.close()
    assert not errors, errors


def test_on_a_phone_everything_is_big_enough_to_tap_and_the_chunk_map_works(
        cl: Cluster, phone: Any, artifacts: Path) -> None:
    # 40 chunks of 256 KiB: a map taller than its box.
    f = put_file(cl, "health/phone-map.bin", os.urandom(40 * 256 * 1024))
    put_file(cl, "health/a-file-with-a-rather-long-name-to-wrap-on-a-phone.pdf", b"x" * 1000)
    page = phone

    def check(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name}: the page is {width}px wide on a 390px screen"
        small = page.evaluate(TOO_SMALL)
        assert not small, f"{name}: smaller than 44x44 CSS px: {small}"
        shot(page, artifacts, f"health-phone-{name}")

    expect(page.locator("#signin-key")).to_be_visible()
    check("signin")
    sign_in(page, cl.admin_key)

    expect(page.locator("#health-word")).to_have_text("Healthy")
    expect(page.locator(".card.data .metric")).to_be_visible()
    check("overview")
    for route, shown in (("nodes", "#nodes-table tbody tr"), ("files", "#files-table tbody tr"),
                         ("activity", "#event-list .event")):
        page.locator(f'.mainnav a[data-route="{route}"]').tap()
        expect(page.locator(shown).first).to_be_visible()
        expect(page.locator(f'.mainnav a[data-route="{route}"]')).to_have_attribute(
            "aria-current", "page")
        check(route)
        if route == "nodes":  # a dialog too
            page.locator("#nodes-table [data-action=whatif]").first.tap()
            expect(page.locator("dialog[open] #impact-summary")).to_contain_text("If node-")
            check("dialog")
            page.locator("dialog[open] [data-action=cancel]").tap()
            expect(page.locator("dialog[open]")).to_have_count(0)

    page.goto(f"{cl.url}/#/files/{f['id']}")
    expect(page.locator("#chunk-map tbody tr")).to_have_count(40)
    check("file-detail")
    wrap = page.locator(".chunkmap-wrap")
    box = wrap.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    # Taller than its box: it scrolls inside it, not the page sideways.
    sizes = wrap.evaluate("(e) => [e.scrollHeight, e.clientHeight]")
    assert sizes[0] > sizes[1], sizes
    info = cl.http.get(f"/api/files/{f['id']}/info").json()
    chunk = info["chunk_map"][2]
    holder = chunk["nodes"][0]["name"]
    cell = page.locator(f'#chunk-map tr[data-chunk="2"] td[data-node="{holder}"]')
    cell.tap()
    detail = page.locator("#cm-detail")
    expect(detail).to_contain_text(f"Chunk #2 ({chunk['id'][:12]}…) on {holder}: Copy here")
    expect(cell).to_have_class(re.compile(r"\bpicked\b"))
    # The keyboard too: one tab stop, arrows move.
    expect(cell).to_have_attribute("tabindex", "0")
    cell.press("ArrowDown")
    expect(detail).to_contain_text(f"Chunk #3 ({info['chunk_map'][3]['id'][:12]}…) on {holder}")
    assert page.evaluate("document.activeElement.closest('tr').dataset.chunk") == "3"
    assert page.locator('#chunk-map td[tabindex="0"]').count() == 1
    # Scrolled inside its own box to the last row, the page did not widen.
    page.locator('#chunk-map tr[data-chunk="39"] td.cm-cell').first.scroll_into_view_if_needed()
    assert wrap.evaluate("(e) => e.scrollTop") > 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, artifacts, "health-phone-chunk-map")
    # A live update re-reads the map (any new event does): where the reader
    # scrolled to and the cell picked stay.
    page.evaluate("document.querySelector('#chunk-map').dataset.old = '1'")
    top = wrap.evaluate("(e) => e.scrollTop")
    make_key(cl, "readonly")  # logs an event
    expect(page.locator("#chunk-map[data-old]")).to_have_count(0, timeout=15000)  # re-drawn
    assert abs(wrap.evaluate("(e) => e.scrollTop") - top) <= 1
    expect(page.locator("#chunk-map td.picked")).to_have_count(1)
    expect(detail).to_contain_text("Chunk #3")


# -- a node stops: degraded --------------------------------------------------------------


def test_a_stopped_node_makes_it_degraded_with_the_node_to_check(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    expect(page.locator("#health-word")).to_have_text("Healthy")
    cl.kill_node(4)
    strip = page.locator("#health-strip")
    expect(strip).to_have_attribute("data-level", "degraded", timeout=30000)
    expect(page.locator("#health-word")).to_have_text("Degraded")
    expect(page.locator("#health-next")).to_contain_text(
        re.compile(r"1 node (offline|dead): check node-4"))
    expect(page).to_have_title("⚠ Degraded · Overview · TossIt")
    badge = page.locator('.mainnav a[data-route="nodes"] .nav-alert')
    expect(badge).to_have_text("1")
    expect(badge).to_have_attribute("data-level", "degraded")
    # The badge is not part of the link's name; the link is described by the problem.
    nav = page.get_by_role("link", name="Nodes", exact=True)
    expect(nav).to_have_attribute("aria-describedby", "nav-alert-desc")
    expect(page.locator("#nav-alert-desc")).to_contain_text("check node-4")
    shot(page, artifacts, "health-degraded")
    page.locator("#health-next a").click()
    expect(page).to_have_url(re.compile(r"#/nodes$"))
    expect(page.locator('#nodes-table tr[data-node="node-4"]')).not_to_have_attribute(
        "data-state", "online")
    expect(page).to_have_title("⚠ Degraded · Nodes · TossIt")


# -- the brain stops: unreachable, figures greyed ----------------------------------------------


def test_a_stopped_brain_is_unreachable_and_the_figures_are_greyed(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    expect(page.locator(".card.data .metric")).to_be_visible()
    html = page.locator("html")
    expect(html).not_to_have_class(re.compile(r"\bstale\b"))
    assert page.evaluate("getComputedStyle(document.querySelector('#main')).filter") == "none"
    cl.stop_brain()
    try:
        strip = page.locator("#health-strip")
        expect(strip).to_have_attribute("data-level", "unreachable", timeout=15000)
        expect(page.locator("#health-word")).to_have_text("Brain unreachable")
        expect(page.locator("#health-next")).to_have_text(
            "Lost connection to the brain — retrying…")
        expect(page).to_have_title("✕ Brain unreachable · Overview · TossIt")
        expect(html).to_have_class(re.compile(r"\bstale\b"))
        main = page.evaluate("""() => {
            const s = getComputedStyle(document.querySelector('#main'));
            return [s.filter, s.opacity];
        }""")
        assert "grayscale(1)" in main[0] and float(main[1]) < 0.7, main
        age = page.locator("#health-age")
        expect(age).to_contain_text(re.compile(r"Last updated \d+(\.\d)? s ago"))
        first = age.text_content()
        expect(age).not_to_have_text(first or "", timeout=5000)  # it counts on
        expect(page.locator("#health-retry")).to_be_visible()
        expect(page.locator("#live")).to_contain_text("Offline")
        shot(page, artifacts, "health-unreachable")
    finally:
        cl.start_brain()
    # Back by itself; node-4 is still down, so degraded, and nothing greyed.
    expect(page.locator("#health-strip")).to_have_attribute("data-level", "degraded",
                                                            timeout=30000)
    expect(html).not_to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator("#health-age")).to_have_count(0)
    expect(page).to_have_title(re.compile(r"^⚠ Degraded · Overview · TossIt$"))
    wait_until(lambda: cl.http.get("/health").status_code == 200, 30, what="brain back")
    # The restarted brain counts a node online once it has heard from it again.
    wait_until(lambda: cl.http.get("/api/status").json()["nodes"]["online"] == 4, 30,
               what="the 4 live nodes online again")
