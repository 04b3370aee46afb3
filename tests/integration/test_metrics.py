"""The brain's /metrics as Prometheus scrapes it, on a real cluster: copy counts,
bytes at risk, repair progress, capacity, scrub results and request latency
change as an upload, a node's death and a repair happen."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cluster import Cluster, wait_until

CHUNK = 64 * 1024


def scrape(cl: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = cl.http.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(m: dict[Any, float], name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def test_metrics_follow_an_upload_a_node_death_and_the_repair(make_cluster: Any) -> None:
    cl = make_cluster(nodes=4, replicas=3, chunk_size="64KiB",
                      brain_args=["--dead-after", "4", "--repair-interval", "3600",
                                  "--no-auto-repair", "--snapshot-interval", "0"],
                      node_args=["--scrub-rate", "16MiB"])
    data = os.urandom(12 * CHUNK)
    fid = cl.upload("twelve.bin", data)["id"]
    assert cl.download(fid) == data
    cl.http.get(f"/api/files/{fid}/info")

    m = scrape(cl)
    assert value(m, "tossit_replicas_target") == 3
    assert value(m, "tossit_chunks_by_copies", copies="3") == 12
    assert value(m, "tossit_chunks_by_copies", copies="0") == 0  # there, at 0
    assert value(m, "tossit_chunk_bytes_by_copies", copies="3") == 12 * CHUNK
    assert value(m, "tossit_bytes_at_risk") == 0
    assert value(m, "tossit_nodes", state="online") == 4
    # The upload buffer: its limit (the default), and nothing held once the upload is in.
    assert value(m, "tossit_upload_buffer_bytes", kind="limit") == 64 * 1024 * 1024
    assert value(m, "tossit_upload_buffer_bytes", kind="held") == 0
    assert value(m, "tossit_uploads_waiting_for_buffer") == 0
    # One upload: one commit, one change; every pack written (the upload's, the
    # admin key's) is the one the metadata records once it is on the nodes.
    assert value(m, "tossit_commits_total") == 1
    assert value(m, "tossit_committed_changes_total") == 1
    packs = value(m, "tossit_manifest_packs_written_total")
    assert packs is not None and packs >= 1
    wait_until(lambda: cl.http.get("/api/status").json()["manifests"]["packs"] == packs, 10,
               what="the packs written recorded")
    cap = cl.http.get("/api/status").json()["capacity"]
    assert value(m, "tossit_capacity_bytes", kind="raw") == cap["raw"] > 0
    assert value(m, "tossit_capacity_bytes", kind="usable") == cap["usable"] > 0
    assert 0 < value(m, "tossit_capacity_bytes", kind="room") <= cap["raw"] / 3  # type: ignore[operator]
    used_before = wait_until(lambda: (u := value(scrape(cl), "tossit_capacity_bytes",
                                                 kind="used")) and u >= 3 * 12 * CHUNK and u,
                             10, what="the nodes' usage in their heartbeats")
    # Latency by route template (never the raw path: bounded labels), one per request.
    assert value(m, "tossit_http_request_duration_seconds_count",
                 method="POST", route="/api/files/upload") == 1
    assert value(m, "tossit_http_request_duration_seconds_count",
                 method="GET", route="/api/files/{file_id}/download") == 1
    assert not [k for k in m if k[0].startswith("tossit_http_request")
                and str(fid) in dict(k[1]).get("route", "")]
    cl.http.get("/no/such/page")
    assert value(scrape(cl), "tossit_http_request_duration_seconds_count",
                 method="GET", route="<unmatched>") == 1
    # Scrub figures come from the nodes' answers, fetched in the background.
    m = wait_until(lambda: (x := scrape(cl)) and value(
        x, "tossit_scrub_rate_bytes_per_second", node="node-2") == 16 * 1024 * 1024 and x,
        20, what="the scrub gauges")
    assert value(m, "tossit_scrub_corrupt_found", node="node-0") == 0
    assert value(m, "tossit_corrupt_copies_total", found_by="scrub") == 0

    # A node dies: its copies stop counting at once (a chunk at 2 copies is at risk).
    victim = 1
    held = len(set(cl.chunk_files(victim)) & {c["id"] for c in cl.http.get(
        f"/api/files/{fid}/info").json()["chunk_map"]})
    assert held, "the victim held nothing: proves nothing"
    cl.kill_node(victim)
    cl.wait_node_state(victim, "offline", 15)
    m = scrape(cl)
    assert value(m, "tossit_chunks_by_copies", copies="2") == held
    assert value(m, "tossit_chunks_at_risk") == held
    assert value(m, "tossit_bytes_at_risk") == held * CHUNK
    assert value(m, "tossit_nodes", state="offline") == 1
    # Its disk is this machine's, shared with the others: only its usage leaves the sum.
    assert value(m, "tossit_capacity_bytes", kind="used") < used_before

    cl.wait_node_state(victim, "dead", 15)
    before = value(m, "tossit_repair_copied_chunks_total", reason="under-replicated")
    assert before == 0
    stats = cl.http.post("/api/admin/repair", params={"rebalance": "false"}).json()
    assert stats["repaired"] >= held, stats  # and the manifest packs it held
    m = wait_until(lambda: (x := scrape(cl)) and value(x, "tossit_bytes_at_risk") == 0 and x,
                   20, what="no bytes at risk after the repair")
    assert value(m, "tossit_repair_copied_chunks_total",
                 reason="under-replicated") == stats["repaired"]
    assert value(m, "tossit_repair_copied_bytes_total",
                 reason="under-replicated") == stats["bytes_copied"] >= held * CHUNK
    assert value(m, "tossit_repair_failed_copies_total") == 0
    assert value(m, "tossit_repair_queue_chunks") == 0
    assert value(m, "tossit_chunks_by_copies", copies="3") == 12
    assert value(m, "tossit_nodes", state="dead") == 1
