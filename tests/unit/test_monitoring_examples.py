"""docs/grafana-dashboard.json and docs/prometheus.yml are examples users copy:
they must name metrics the brain and the nodes really export, and the jobs the
dashboard filters on must be the ones the scrape config defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_DEFINED = re.compile(r'(?:Counter|Gauge|Histogram)\(\s*"(tossit_[a-z_]+)"')
_USED = re.compile(r"\btossit_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported_metrics() -> set[str]:
    """Every metric family defined in the source (brain and node)."""
    names: set[str] = set()
    for path in (ROOT / "src" / "tossit").rglob("*.py"):
        names.update(_DEFINED.findall(path.read_text()))
    return names


def family(sample: str) -> str:
    """``tossit_uploads_total`` -> ``tossit_uploads`` (what the code defines)."""
    for suffix in _SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def test_dashboard_uses_only_exported_metrics_and_scraped_jobs() -> None:
    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {family(m) for e in exprs for m in _USED.findall(e)}
    defined = exported_metrics()
    assert {"tossit_nodes", "tossit_node_chunk_ops", "tossit_capacity_bytes"} <= defined
    assert len(used) >= 10
    assert used <= defined, f"not exported: {sorted(used - defined)}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))

    scrape = (ROOT / "docs" / "prometheus.yml").read_text()
    jobs = set(re.findall(r"job_name:\s*(\S+)", scrape))
    defaults = {v["query"] for v in dash["templating"]["list"]}
    assert defaults == jobs == {"tossit-brain", "tossit-nodes"}
    # The brain's /metrics needs a key; the nodes' are open.
    brain_job = scrape.split("job_name: tossit-nodes")[0]
    assert "credentials_file:" in brain_job
