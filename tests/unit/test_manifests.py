"""Manifest packs and the rules that rebuild the metadata from them (pure)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tossit.chunking import META, content_id
from tossit.manifests import (
    MAGIC,
    DelEntry,
    KeyEntry,
    PackError,
    PutEntry,
    decode_pack,
    encode_pack,
    needed_versions,
    pack_id,
    pack_key,
    put_entry,
    regular_sizes,
    resolve,
)

KEY = pack_key("the cluster secret")
H = hashlib.sha256(b"x").hexdigest()


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def put(v: int, key: str = "a", oid: int | None = None, size: int = 10,
        bucket: str = "default") -> PutEntry:
    return put_entry(version=v, bucket=bucket, key=key, object_id=oid or v, size=size,
                     sha256=H, content_type="text/plain", created=1.5, chunk_size=4,
                     chunks=[(cid(f"{key}{v}-{i}"), s)
                             for i, s in enumerate(regular_sizes(size, 4, -(-size // 4)))])


def dele(v: int, key: str = "a", oid: int = 1) -> DelEntry:
    return DelEntry(version=v, bucket="default", key=key, id=oid, deleted=2.5)


def keyv(v: int, key_id: str = "TKAAAAAAAAAAAAAAAAAA", revoked: float | None = None
         ) -> KeyEntry:
    return KeyEntry(version=v, key_id=key_id, name="laptop", role="admin", secret_sha256=H,
                    salt="ab" * 16, created=1.0, revoked=revoked)


def test_a_pack_round_trips_and_is_the_same_bytes_every_time() -> None:
    entries: list[PutEntry | DelEntry | KeyEntry] = [put(3, "b"), dele(2), keyv(1),
                                                     put(4, "c", size=0)]
    data = encode_pack(entries, KEY)
    assert data.startswith(MAGIC)
    assert encode_pack(list(reversed(entries)), KEY) == data  # order-independent
    assert decode_pack(data, KEY) == sorted(entries, key=lambda e: e.version)
    assert pack_id(data) == content_id(data, META) != hashlib.sha256(data).hexdigest()


def test_regular_chunk_sizes_are_not_stored_but_others_are() -> None:
    regular = put(1, size=10)
    assert regular.chunk_sizes is None and regular.sizes() == [4, 4, 2]
    odd = put_entry(version=2, bucket="default", key="odd", object_id=2, size=6, sha256=H,
                    content_type="x", created=0, chunk_size=4,
                    chunks=[(cid("p"), 3), (cid("q"), 3)])
    assert odd.chunk_sizes == (3, 3)
    back = decode_pack(encode_pack([odd], KEY), KEY)[0]
    assert isinstance(back, PutEntry) and back.sizes() == [3, 3]
    assert put(3, size=0).sizes() == [] and put(4, size=4).sizes() == [4]


@pytest.mark.parametrize("damage, why", [
    (lambda d: d.replace(b"TOSSIT", b"TOSSED", 1), "not a manifest pack"),
    (lambda d: d[:-3] + b"xyz", "bad signature"),
    (lambda d: MAGIC + b"00" * 32 + b"\n" + d.split(b"\n", 2)[2], "bad signature"),
    (lambda d: MAGIC + b"short\n{}", "malformed"),
    (lambda d: MAGIC, "malformed"),
])
def test_a_damaged_or_forged_pack_is_refused(damage: object, why: str) -> None:
    data = encode_pack([put(1), dele(2)], KEY)
    with pytest.raises(PackError, match=why):
        decode_pack(damage(data), KEY)  # type: ignore[operator]


def test_a_pack_signed_with_another_secret_is_refused() -> None:
    data = encode_pack([put(1)], pack_key("another cluster"))
    with pytest.raises(PackError, match="bad signature"):
        decode_pack(data, KEY)


def _signed(payload: dict[str, object]) -> bytes:
    import hmac

    body = json.dumps(payload).encode()
    return MAGIC + hmac.new(KEY, body, hashlib.sha256).hexdigest().encode() + b"\n" + body


@pytest.mark.parametrize("payload, why", [
    ({"format": 2, "entries": []}, "unknown pack format"),
    ({"format": 1, "entries": [{"op": "put", "version": 1}]}, "unreadable"),
    ({"format": 1, "entries": [{"op": "nuke", "version": 1}]}, "unreadable"),
    ({"format": 1, "entries": [{**put(1).model_dump(mode="json"), "size": 13}]},
     "do not add up"),
    ({"format": 1, "entries": [{**put(1).model_dump(mode="json"), "chunk_sizes": [4, 4, 1]}]},
     "do not add up"),
    ({"format": 1, "entries": [{**put(1).model_dump(mode="json"), "chunks": ["../x"]}]},
     "unreadable"),
])
def test_a_signed_but_invalid_pack_is_refused(payload: dict[str, object], why: str) -> None:
    with pytest.raises(PackError, match=why):
        decode_pack(_signed(payload), KEY)


@pytest.mark.parametrize("entries, files, deleted", [
    ([put(1)], {"a": 1}, set()),
    ([put(1), put(2)], {"a": 2}, set()),  # an overwrite: the newest content
    ([put(2), put(1)], {"a": 2}, set()),  # found in any order
    ([put(1), dele(2)], {}, {"a"}),  # deleted stays deleted
    ([put(1), dele(2), put(3)], {"a": 3}, set()),  # deleted, then uploaded again
    ([put(1), put(2), dele(3)], {}, {"a"}),  # an old version does not come back
    ([dele(3), put(1)], {}, {"a"}),
    ([put(1, "a"), put(2, "b"), dele(3, "a")], {"b": 2}, {"a"}),
    ([put(1), put(1)], {"a": 1}, set()),  # the same entry in two packs
])
def test_the_newest_entry_of_a_name_wins(entries: list[PutEntry | DelEntry],
                                         files: dict[str, int], deleted: set[str]) -> None:
    r = resolve(entries)
    assert {k: e.version for (_, k), e in r.files.items()} == files
    assert {k for _, k in r.deleted} == deleted
    assert r.max_version == max(e.version for e in entries)


def test_keys_resolve_to_their_newest_state() -> None:
    r = resolve([keyv(1), keyv(5, revoked=9.0), keyv(3), keyv(2, "TKBBBBBBBBBBBBBBBBBB")])
    assert r.keys["TKAAAAAAAAAAAAAAAAAA"].revoked == 9.0
    assert set(r.keys) == {"TKAAAAAAAAAAAAAAAAAA", "TKBBBBBBBBBBBBBBBBBB"}
    assert not r.files


@pytest.mark.parametrize("entries, needed", [
    ([put(1)], {1}),
    ([put(1), put(2)], {2}),  # the overwritten version is not needed
    ([put(1), dele(2)], {2}),  # the tombstone keeps put 1 from coming back
    ([dele(2)], set()),  # nothing older left: the tombstone can go too
    ([put(1), dele(2), put(3)], {3}),
    ([dele(2), put(3)], {3}),
    ([put(1), dele(2), dele(4)], {4}),
    ([dele(2), dele(4)], set()),
    ([put(5), dele(4)], {5}),  # a put newer than the tombstone
    ([keyv(1), keyv(2)], {2}),
    ([put(1, "a"), put(2, "b"), dele(3, "a")], {2, 3}),
])
def test_which_entries_the_nodes_must_keep(entries: list[PutEntry | DelEntry | KeyEntry],
                                           needed: set[int]) -> None:
    assert needed_versions(entries) == needed


ops = st.lists(st.tuples(st.sampled_from(["put", "del"]), st.sampled_from("abc")),
               min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(ops, st.data())
def test_dropping_unneeded_entries_never_changes_what_a_rebuild_sees(
        history: list[tuple[str, str]], data: st.DataObject) -> None:
    """Whatever subset of the unneeded entries is lost (their packs deleted), the
    entries that are kept resolve to the same files and deletions."""
    entries: list[PutEntry | DelEntry] = []
    for v, (op, name) in enumerate(history, start=1):
        entries.append(put(v, name) if op == "put" else dele(v, name))
    full = resolve(entries)
    keep = needed_versions(entries)
    lost = data.draw(st.sets(st.sampled_from([e.version for e in entries
                                              if e.version not in keep]) if
                             len(entries) > len(keep) else st.nothing()))
    left = [e for e in entries if e.version not in lost]
    got = resolve(left)
    assert got.files == full.files
    assert set(got.deleted) <= set(full.deleted)  # a moot tombstone may go
    assert not set(got.files) & set(full.deleted)
