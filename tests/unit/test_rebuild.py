"""Turning what the nodes hold into new metadata (brain/rebuild.py, pure)."""

from __future__ import annotations

import hashlib

from tossit.brain.rebuild import Gathered, NodeFound, PackFound, plan
from tossit.chunking import DATA, META
from tossit.manifests import BucketEntry, DelEntry, KeyEntry, PutEntry, put_entry

Entry = PutEntry | DelEntry | KeyEntry | BucketEntry

H = hashlib.sha256(b"x").hexdigest()
N1, N2, N3 = "node1", "node2", "node3"


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def put(v: int, key: str, chunks: list[str], size: int = 4, bucket: str = "default"
        ) -> PutEntry:
    return put_entry(version=v, bucket=bucket, key=key, object_id=v,
                     size=size * len(chunks), sha256=H, content_type="x", created=float(v),
                     chunk_size=size, chunks=[(cid(c), size) for c in chunks])


def dele(v: int, key: str, oid: int, bucket: str = "default") -> DelEntry:
    return DelEntry(version=v, bucket=bucket, key=key, id=oid, deleted=float(v))


def gathered(packs: dict[str, tuple[list[Entry], set[str]]],
             holdings: dict[str, dict[str, int]]) -> Gathered:
    """``packs``: id -> (entries, nodes with a good copy); ``holdings``: node ->
    chunk name -> size on that node."""
    g = Gathered()
    for n in (N1, N2, N3):
        g.nodes[n] = NodeFound(n, n.replace("node", "node-"), f"http://{n}:8081")
        g.inventory[n] = {}
    for node, chunks in holdings.items():
        g.inventory[node].update({cid(c): (size, DATA) for c, size in chunks.items()})
    for pid, (entries, on) in packs.items():
        g.packs[pid] = PackFound(pid, 100, list(entries), good_on=set(on))
        for n in on:
            g.inventory[n][pid] = (100, META)
    return g


ALL = {N1, N2, N3}
EVERYWHERE = {n: {"a": 4, "b": 4, "c": 4, "d": 4} for n in ALL}


def test_files_deletes_and_overwrites_come_out_as_they_were_committed() -> None:
    p = plan(gathered({
        "p1": ([put(1, "one", ["a"]), put(2, "two", ["b"])], ALL),
        "p2": ([put(3, "one", ["c"]), dele(4, "two", 2)], ALL),
    }, EVERYWHERE), replicas=3)
    assert [(f.entry.key, f.entry.version) for f in p.files] == [("one", 3)]
    assert p.deleted == 1 and not p.incomplete
    # one@1 is superseded, two@2 is kept from coming back by its tombstone.
    assert {e.version: needed for e, _, needed in p.entries} == {
        1: False, 2: False, 3: True, 4: True}
    assert p.chunks["p1"].refcount == 0 and p.chunks["p2"].refcount == 2
    assert p.chunks["p1"].kind == META and p.chunks["p1"].replicas == dict.fromkeys(ALL, "ok")
    # Only chunks of live files are known: a and b are garbage on the nodes now.
    assert {c for c, row in p.chunks.items() if row.kind == DATA} == {cid("c")}
    assert p.chunks[cid("c")].replicas == dict.fromkeys(ALL, "ok")
    assert p.max_version == 4


def test_a_file_missing_a_chunk_is_kept_and_named() -> None:
    holdings = {N1: {"a": 4}, N2: {"a": 4, "b": 3}, N3: {}}  # b: wrong size on node 2
    p = plan(gathered({"p": ([put(1, "whole", ["a"]), put(2, "broken", ["a", "b"])],
                             ALL)}, holdings), replicas=3)
    assert [f.entry.key for f in p.incomplete] == ["broken"]
    assert p.summary()["incomplete_names"] == ["default/broken"]
    assert p.summary()["chunks_missing"] == 1
    assert p.chunks[cid("b")].replicas == {N2: "corrupt"}
    whole = next(f for f in p.files if f.entry.key == "whole")
    assert whole.missing == 0 and whole.below == 1  # 2 copies of 3
    assert p.chunks[cid("a")].refcount == 2  # both files use it


def test_a_chunk_repeated_in_a_file_counts_once_per_position() -> None:
    p = plan(gathered({"p": ([put(1, "rep", ["a", "a", "b"])], ALL)}, EVERYWHERE), 3)
    assert p.chunks[cid("a")].refcount == 2 and p.chunks[cid("b")].refcount == 1


def test_an_entry_in_two_packs_belongs_to_the_one_with_more_copies() -> None:
    e = put(1, "x", ["a"])
    p = plan(gathered({"thin": ([e], {N1}), "wide": ([e], {N1, N2, N3})}, EVERYWHERE), 3)
    assert [(v.version, pack) for v, pack, _ in p.entries] == [(1, "wide")]
    assert p.chunks["wide"].refcount == 1 and p.chunks["thin"].refcount == 0


def test_damaged_pack_copies_are_recorded_as_such() -> None:
    g = gathered({"p": ([put(1, "x", ["a"])], {N1, N2})}, EVERYWHERE)
    g.packs["p"].bad_on.add(N3)
    p = plan(g, 3)
    assert p.chunks["p"].replicas == {N1: "ok", N2: "ok", N3: "corrupt"}


def test_keys_come_back_with_their_newest_state() -> None:
    k1 = KeyEntry(version=1, key_id="TKAAAAAAAAAAAAAAAAAA", name="laptop", role="readwrite",
                  secret_sha256=H, salt="s", created=1.0)
    k2 = k1.model_copy(update={"version": 5, "revoked": 7.0})
    p = plan(gathered({"p": ([k1], ALL), "q": ([k2], ALL)}, EVERYWHERE), 3)
    assert [(k.key_id, k.revoked) for k in p.keys] == [("TKAAAAAAAAAAAAAAAAAA", 7.0)]
    assert p.chunks["p"].refcount == 0 and p.chunks["q"].refcount == 1


def test_unreachable_sources_and_unreadable_packs_are_reported() -> None:
    g = gathered({"p": ([put(1, "x", ["a"])], ALL)}, EVERYWHERE)
    g.unreachable["http://node4:8081"] = "connection refused"
    g.unreadable["dead"] = "damaged on every node holding it"
    s = plan(g, 3).summary()
    assert (s["nodes_unreachable"], s["packs_unreadable"], s["files"]) == (1, 1, 1)


def test_from_a_snapshot_packs_newer_than_it_apply_on_top() -> None:
    """The snapshot (complete to version 4) has a and b; packs hold a put of c
    older than it (c was deleted before the snapshot, its tombstone's pack is
    lost), and newer entries: b overwritten, d uploaded."""
    snapshot: list[Entry] = [put(2, "a", ["a"]), put(4, "b", ["b"])]
    packs: dict[str, tuple[list[Entry], set[str]]] = {
        "old": ([put(2, "a", ["a"]), put(3, "c", ["c"])], ALL),
        "new": ([put(5, "b", ["c"]), put(6, "d", ["d"])], ALL)}
    p = plan(gathered(packs, EVERYWHERE), 3, base=snapshot, as_of=4, now=99.0)
    assert [(f.entry.key, f.entry.version) for f in p.files] == [("a", 2), ("b", 5), ("d", 6)]
    # c stays deleted, and gets a new tombstone (in no pack yet: the brain writes it).
    tomb = [(e, pack, needed) for e, pack, needed in p.entries if isinstance(e, DelEntry)]
    assert [(e.key, e.version, pack, needed) for e, pack, needed in tomb] == [
        ("c", 7, None, True)]
    # Entries only in the snapshot have no pack yet; the others keep theirs.
    homes = {e.version: pack for e, pack, _ in p.entries}
    assert homes == {2: "old", 3: "old", 4: None, 5: "new", 6: "new", 7: None}
    assert p.deleted == 1


def test_a_snapshot_alone_rebuilds_files_whose_packs_are_lost() -> None:
    p = plan(gathered({}, EVERYWHERE), 3, base=[put(3, "a", ["a", "b"])], as_of=3)
    assert [f.entry.key for f in p.complete] == ["a"]
    assert [(e.version, pack, needed) for e, pack, needed in p.entries] == [(3, None, True)]


def test_two_changes_under_one_version_resolve_the_same_whatever_the_read_order() -> None:
    """A brain ran on partial metadata (before the counters left a gap after a
    recovery) and handed out a version the unread nodes' packs already used: the
    entry of the pack with the most copies wins, in any read order, and the
    conflict is reported (recover says so)."""
    ours, theirs = put(7, "acked", ["a"]), dele(7, "old", 3)
    packs: dict[str, tuple[list[Entry], set[str]]] = {
        "from-partial": ([ours], {N1}), "from-unread": ([theirs], {N2, N3})}
    results = []
    for order in (list(packs), list(reversed(packs))):
        p = plan(gathered({k: packs[k] for k in order}, EVERYWHERE), 3)
        results.append([(e.version, type(e).__name__) for e, _, _ in p.entries])
        assert p.conflicts == [7] and p.summary()["conflicts"] == 1
    assert results[0] == results[1] == [(7, "DelEntry")]


def test_a_rebuilt_snapshot_infers_no_deletion_of_what_its_recovery_never_saw() -> None:
    """The snapshot's metadata came from a recovery that found versions up to 3
    (``complete_from`` 4): a put at version 2 it lacks may be a file that recovery
    never saw, not one it deleted. It is not tombstoned; a put newer than that
    recovery that the snapshot lacks was deleted by its brain, and is."""
    snapshot: list[Entry] = [put(1, "a", ["a"])]
    packs: dict[str, tuple[list[Entry], set[str]]] = {
        "unread-then": ([put(1, "a", ["a"]), put(2, "unseen", ["b"])], ALL),
        "after": ([put(5, "gone", ["c"])], ALL)}
    p = plan(gathered(packs, EVERYWHERE), 3, base=snapshot, as_of=6, now=9.0,
             complete_from=4)
    assert [f.entry.key for f in p.files] == ["a", "unseen"]
    tombs = [e.key for e, _, _ in p.entries if isinstance(e, DelEntry)]
    assert tombs == ["gone"]
    # Without the floor (a snapshot of metadata never rebuilt), both are tombstoned.
    q = plan(gathered(packs, EVERYWHERE), 3, base=snapshot, as_of=6, now=9.0)
    assert [f.entry.key for f in q.files] == ["a"]


def bucket(v: int, name: str, deleted: float | None = None) -> BucketEntry:
    return BucketEntry(version=v, name=name, created=float(v), deleted=deleted)


def test_buckets_come_back_empty_or_deleted_as_their_newest_entry_says() -> None:
    entries: list[Entry] = [
        bucket(1, "empty"),
        bucket(2, "gone"), put(3, "x", ["a"], bucket="gone"), dele(4, "x", 3, bucket="gone"),
        bucket(5, "gone", deleted=5.5),
        bucket(6, "back"), bucket(7, "back", deleted=7.5), bucket(8, "back"),
        # A lost pack: the bucket's deletion is found, the file put in it after
        # it was made again is too, its newer bucket entry is not.
        bucket(9, "hidden", deleted=9.5), put(10, "y", ["b"], bucket="hidden"),
        # Logged before buckets had entries: known from its files' entries only.
        put(11, "z", ["c"], bucket="old"), dele(12, "z", 11, bucket="old"),
    ]
    p = plan(gathered({"p": (entries, ALL)}, EVERYWHERE), 3)
    assert p.bucket_rows(now=100.0) == {
        "default": (100.0, None), "empty": (1.0, None), "gone": (5.0, 5.5),
        "back": (8.0, None), "hidden": (9.0, None), "old": (100.0, None)}
    assert p.summary()["buckets"] == 5
    # The newest entry of each bucket is needed; older ones are not.
    needed = {e.version for e, _, n in p.entries if n and isinstance(e, BucketEntry)}
    assert needed == {1, 5, 8, 9}
