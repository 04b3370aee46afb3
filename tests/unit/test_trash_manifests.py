"""The trash in the manifest log (tossit.manifests, brain/rebuild.py): pure rules.

A file in the trash has its own scope (its id): it never owns its name again,
a ``purge`` keeps it from coming back, a restore ends its stay and puts it
under a name. Tables of entries in, what a rebuild makes of them out.
"""

from __future__ import annotations

import hashlib

import pytest

from tossit.brain.rebuild import Gathered, NodeFound, PackFound, plan
from tossit.chunking import DATA, META
from tossit.manifests import (
    AnyEntry,
    DelEntry,
    PurgeEntry,
    PutEntry,
    TrashEntry,
    decode_pack,
    encode_pack,
    entry_scope,
    needed_versions,
    put_entry,
    resolve,
)

H = hashlib.sha256(b"x").hexdigest()
N1, N2, N3 = "node1", "node2", "node3"
ALL = {N1, N2, N3}
KEY = b"k" * 32


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def put(v: int, key: str, oid: int, chunk: str = "a") -> PutEntry:
    return put_entry(version=v, bucket="default", key=key, object_id=oid, size=4,
                     sha256=H, content_type="x", created=1.0, chunk_size=4,
                     chunks=[(cid(chunk), 4)])


def dele(v: int, key: str, oid: int) -> DelEntry:
    return DelEntry(version=v, bucket="default", key=key, id=oid, deleted=float(v))


def trash(v: int, key: str, oid: int, chunk: str = "a", why: str = "deleted") -> TrashEntry:
    body = put(v, key, oid, chunk).model_dump()
    body.pop("op")
    return TrashEntry(**body, deleted=float(v), purge_at=float(v) + 100,
                      why=why)  # type: ignore[arg-type]


def purge(v: int, key: str, oid: int, why: str = "purged") -> PurgeEntry:
    return PurgeEntry(version=v, bucket="default", key=key, id=oid, purged=float(v),
                      why=why)  # type: ignore[arg-type]


# (what happened, the entries logged, live files, trash ids, needed versions)
CASES: list[tuple[str, list[AnyEntry], dict[str, int], set[int], set[int]]] = [
    ("delete -> trash",
     [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1)],
     {}, {1}, {2, 3}),
    ("delete -> trash -> purge",
     [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1), purge(4, "f", 1)],
     {}, set(), {2, 4}),
    ("delete -> trash -> restore",
     [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1), purge(4, "f", 1, "restored"),
      put(5, "f", 1)],
     {"f": 1}, set(), {4, 5}),
    ("overwrite -> trash, with a newer put of the name",
     [put(1, "f", 1), trash(2, "f", 1, why="overwritten"), put(3, "f", 2, "b")],
     {"f": 2}, {1}, {2, 3}),
    ("restore under a new name",
     [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1), purge(4, "f", 1, "restored"),
      put(5, "g", 1)],
     {"g": 1}, set(), {2, 4, 5}),
    ("restore replacing the file that took the name",
     [put(1, "f", 1), trash(2, "f", 1, why="overwritten"), put(3, "f", 2, "b"),
      trash(4, "f", 2, why="overwritten"), purge(5, "f", 1, "restored"), put(6, "f", 1)],
     {"f": 1}, {2}, {4, 5, 6}),
    ("purge whose trash entry is gone: nothing to keep deleted",
     [dele(2, "f", 1), purge(4, "f", 1)],
     {}, set(), set()),
    ("trashed, restored, trashed again",
     [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1), purge(4, "f", 1, "restored"),
      put(5, "f", 1), dele(6, "f", 1), trash(7, "f", 1)],
     {}, {1}, {6, 7}),
]


@pytest.mark.parametrize(("entries", "files", "trashed", "needed"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_resolve_and_needed(entries: list[AnyEntry], files: dict[str, int],
                            trashed: set[int], needed: set[int]) -> None:
    state = resolve(entries)
    assert {k: f.id for (_, k), f in state.files.items()} == files
    assert set(state.trash) == trashed
    assert needed_versions(entries) == needed


def test_a_trashed_file_does_not_own_its_name() -> None:
    t = trash(3, "f", 1)
    assert entry_scope(t) == ("trash", "", "1") == entry_scope(purge(4, "f", 1))
    assert entry_scope(t) != entry_scope(put(1, "f", 1))


def test_one_id_live_and_in_the_trash_the_newer_entry_wins() -> None:
    # The packs of a trash and a later restore were lost apart: not both.
    state = resolve([trash(3, "f", 1), put(5, "f", 1)])
    assert set(state.trash) == set() and ("default", "f") in state.files
    state = resolve([put(5, "f", 1), trash(7, "f", 1)])
    assert set(state.trash) == {1} and not state.files


def test_packs_with_trash_entries_round_trip_and_old_packs_still_decode() -> None:
    entries: list[AnyEntry] = [put(1, "f", 1), dele(2, "f", 1), trash(3, "f", 1),
                               purge(4, "f", 1, "expired")]
    assert decode_pack(encode_pack(entries, KEY), KEY) == entries
    old = encode_pack([put(1, "f", 1), dele(2, "f", 1)], KEY)
    assert b'"trash"' not in old and decode_pack(old, KEY) == [put(1, "f", 1),
                                                                dele(2, "f", 1)]


def _gathered(packs: dict[str, list[AnyEntry]]) -> Gathered:
    g = Gathered()
    for n in ALL:
        g.nodes[n] = NodeFound(n, n, f"http://{n}:8081")
        g.inventory[n] = {cid(c): (4, DATA) for c in "ab"}
    for pid, entries in packs.items():
        g.packs[pid] = PackFound(pid, 100, list(entries), good_on=set(ALL))
        for n in ALL:
            g.inventory[n][pid] = (100, META)
    return g


def test_rebuild_keeps_trashed_files_in_the_trash_with_their_chunks() -> None:
    p = plan(_gathered({
        "p1": [put(1, "keep", 1, "a"), put(2, "gone", 2, "b")],
        "p2": [dele(3, "keep", 1), trash(4, "keep", 1, "a")],
        "p3": [dele(5, "gone", 2), trash(6, "gone", 2, "b")],
        "p4": [purge(7, "gone", 2)],
    }), replicas=3)
    assert p.files == []
    assert [(f.entry.id, f.entry.key) for f in p.trash] == [(1, "keep")]
    assert isinstance(p.trash[0].entry, TrashEntry)
    assert p.trash[0].entry.purge_at == 104.0 and p.trash[0].missing == 0
    # The trashed file's chunk is referenced; the purged one's is garbage.
    assert p.chunks[cid("a")].refcount == 1 and cid("b") not in p.chunks
    assert p.summary()["trash"] == 1 and p.summary()["trash_bytes"] == 4
    assert p.chunks["p1"].refcount == 0  # both puts superseded
    assert p.chunks["p4"].refcount == 1  # the purge keeps "gone" from returning


def test_rebuild_never_lets_a_trashed_file_take_back_a_newer_name() -> None:
    p = plan(_gathered({
        "p1": [put(1, "f", 1, "a")],
        "p2": [trash(2, "f", 1, "a", why="overwritten"), put(3, "f", 2, "b")],
    }), replicas=3)
    assert [(f.entry.key, f.entry.id) for f in p.files] == [("f", 2)]
    assert [f.entry.id for f in p.trash] == [1]
    assert p.chunks[cid("a")].refcount == 1 and p.chunks[cid("b")].refcount == 1


def test_a_snapshot_without_a_trashed_file_gets_a_purge_for_it() -> None:
    # The snapshot (as_of 4) has nothing in the trash: the file left it before,
    # but the pack saying so was lost. The old trash entry must not come back.
    p = plan(_gathered({"p1": [put(1, "f", 1)], "p2": [trash(3, "f", 1)]}), replicas=3,
             base=[], as_of=4, now=10.0)
    assert p.trash == [] and p.files == []
    purges = [e for e, _, _ in p.entries if isinstance(e, PurgeEntry)]
    assert [(e.id, e.version) for e in purges] == [(1, 5)]
