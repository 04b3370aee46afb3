"""The pure-placement simulation (bench/sim_placement.py) on a tiny cluster."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

np = pytest.importorskip("numpy", reason="numpy comes with the test extra")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sim_placement.py"


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sim_placement", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(sim: ModuleType) -> dict[str, Any]:
    # 10 nodes in 4 zones of 1, 2, 3 and 4 nodes; every chunk checked against tossit.placement
    return sim.simulate(
        nodes=10, chunks=2000, replicas=3, zones=4, seed=7, verify=2000, workers=1, block=500
    )


@pytest.fixture(scope="module")
def raw_result(sim: ModuleType) -> dict[str, Any]:
    # the same with the bare capacities as weights (placement before balancing)
    return sim.simulate(
        nodes=10, chunks=2000, replicas=3, zones=4, seed=7, verify=2000, workers=1, block=500,
        raw_weights=True,
    )


def test_vectorised_placement_matches_tossit(result: dict[str, Any]) -> None:
    v = result["verification"]
    assert v["identical"] and v["chunks"] == 2000
    assert set(v["layouts"]) >= {"base", "add_node", "remove_node", "remove_zone", "zones_1"}


def test_verification_catches_a_wrong_placement(
    sim: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = sim.place
    monkeypatch.setattr(sim, "place", lambda s, lay, r: right(s, lay, r)[:, ::-1])
    with pytest.raises(sim.VerificationError):
        sim.simulate(nodes=6, chunks=200, replicas=3, zones=3, seed=1, verify=200, workers=1)


def test_near_ties_fall_back_to_tossit(sim: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # a huge tolerance flags every chunk: all are placed by tossit.placement itself
    monkeypatch.setattr(sim, "TIE_RTOL", 10.0)
    res = sim.simulate(nodes=6, chunks=100, replicas=3, zones=3, seed=2, verify=100, workers=1)
    assert res["verification"]["identical"]
    assert res["verification"]["near_ties_redone_exactly"] == 100


def test_movement_is_minimal(raw_result: dict[str, Any]) -> None:
    # raw weights: only what must move moves
    result = raw_result
    add = result["movement"]["add_node"]
    assert 0.5 <= add["actual_over_capacity_ideal"] <= 2.0
    assert add["unneeded_moves"] == 0  # every move goes onto the new node
    assert add["moved_onto_new_node"] == add["replicas_moved"] > 0
    for event in ("remove_node", "remove_zone"):
        m = result["movement"][event]
        assert m["unneeded_moves"] == 0 and m["actual_over_ideal"] == 1.0
        assert 0.5 <= m["actual_over_capacity_ideal"] <= 2.0


def test_movement_with_balanced_weights(result: dict[str, Any]) -> None:
    # the factors follow the layout, so a few replicas also move between remaining nodes
    add = result["movement"]["add_node"]
    assert add["moved_onto_new_node"] > 0
    for event in ("add_node", "remove_node", "remove_zone"):
        m = result["movement"][event]
        assert m["unneeded_moves"] >= 0 and 1.0 <= m["actual_over_ideal"] < 1.5, event
        assert 0.5 <= m["actual_over_capacity_ideal"] <= 2.0, event


def test_zone_spreading(result: dict[str, Any]) -> None:
    for name, s in result["distinct_zones"].items():
        assert s["share_spread"] == 1.0, name
        if s["zones"] >= 3:
            assert s["histogram"]["3"] == 2000
    two = result["distinct_zones"]["zones_2"]
    assert two["histogram"]["2"] == 2000
    assert sum(two["share_with_2plus_replicas"].values()) == pytest.approx(1.0)
    # with as many zones as replicas every zone holds exactly 1/R of the replicas
    for z in result["utilisation"]["zones_3"]["per_zone"]:
        assert z["replica_share"] == pytest.approx(1 / 3)


def test_utilisation_is_sane(result: dict[str, Any]) -> None:
    for name, u in result["utilisation"].items():
        q = u["ratio"]
        assert 0 < q["min"] <= q["p1"] <= q["p99"] <= q["max"], name
        assert sum(n["replicas"] for n in u["per_node"]) == 2000 * 3
        assert sum(z["replica_share"] for z in u["per_zone"]) == pytest.approx(1.0)
        # the measured zone skew is the one the successive-sampling model predicts
        for z in u["per_zone"]:
            if "model_ratio" in z:
                assert z["ratio"] == pytest.approx(z["model_ratio"], rel=0.2), (name, z)
    # without zones (and with 4 zones of 10 nodes) a node stays within 2x of its capacity share
    for name in ("base", "zones_1"):
        q = result["utilisation"][name]["ratio"]
        assert q["min"] > 0.5 and q["max"] < 2.0, name


def test_inclusion_model(sim: ModuleType) -> None:
    assert sim.inclusion_probs(np.ones(10), 3) == pytest.approx(np.full(10, 0.3))
    p = sim.inclusion_probs(np.arange(1.0, 21.0), 3)
    assert p.sum() == pytest.approx(3.0)
    assert np.all(np.diff(p) > 0) and np.all(p / np.arange(1.0, 21.0) > 0)
    # k = 1: exactly proportional
    w = np.array([1.0, 2.0, 7.0])
    assert sim.inclusion_probs(w, 1) == pytest.approx(w / w.sum())
