"""A small synchronous, typed client for the brain's REST API.

Every answer is parsed into the model the brain declares for it
(``tossit.brain.api.wire``: one definition for the server, its OpenAPI
description and this client), so a caller gets attributes and types
(``f.replication.state``) instead of dict keys.

Uploads stream from disk (raw PUT, so the brain gets a Content-Length and can
refuse early when the cluster is full); a file above ``parts_above`` (64 MiB)
goes as parts, several at once, and resumes after an interruption
(``tossit.client.resumable``). Downloads stream to a temporary file
next to the destination, are checked against the SHA-256 the brain announces,
and only then renamed into place, so a failed transfer never leaves a
truncated file under the real name.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from tossit.brain.api.wire import (
    BucketEntry,
    CompletedUpload,
    DrillResult,
    Event,
    FileDeleted,
    FileInfo,
    FileMeta,
    FileRestored,
    FolderEntry,
    Health,
    JoinToken,
    JoinTokenCreated,
    Key,
    KeyCreated,
    ListingEntry,
    Node,
    NodeImpact,
    NodeRemoved,
    ScrubDone,
    ScrubRateSet,
    ScrubStatus,
    Status,
    TrashEmptied,
    TrashPage,
    TrashPurged,
    UploadAborted,
    UploadedFile,
    UploadList,
    UploadPart,
    UploadParts,
    UploadStarted,
)
from tossit.client.errors import TossitError
from tossit.client.parts import DEFAULT_PARALLEL, DEFAULT_PART_SIZE, DEFAULT_PARTS_ABOVE
from tossit.client.resumable import Notify, PartedOptions, PartedUpload
from tossit.config import brain_urls
from tossit.tlsconfig import client_context

Progress = Callable[[int], None]
Model = TypeVar("Model", bound=BaseModel)
OnConflict = Literal["replace", "rename", "fail"]
ScrubAction = Literal["start", "pause", "resume"]
_PIECE = 1 << 20
_LISTING: TypeAdapter[list[FolderEntry | FileMeta]] = TypeAdapter(list[ListingEntry])
__all__ = ["Downloaded", "OnConflict", "Progress", "ScrubAction", "TossitClient", "TossitError"]


@dataclass(frozen=True)
class Downloaded:
    """A download written to ``path``: its size and the SHA-256 it was checked against."""

    id: int
    path: Path
    size: int
    sha256: str


class TossitClient:
    """``brain_url``: one brain's URL, or several separated by commas (brains sharing
    a PostgreSQL database): a brain that does not answer is skipped for the next.
    ``key`` is an API key secret (sent as a bearer token); ``tls_ca`` a CA
    bundle to verify an HTTPS brain with (default: the system's store).

    Files above ``parts_above`` bytes are uploaded in parts of ``part_size``,
    ``parallel`` at once, resumable; ``state_dir`` holds what a resume needs
    (default ``$XDG_STATE_HOME/tossit/uploads``). ``upload`` can override each."""

    def __init__(self, brain_url: str = "http://127.0.0.1:8000", timeout: float = 60.0,
                 key: str | None = None, tls_ca: str | Path | None = None, *,
                 parts_above: int = DEFAULT_PARTS_ABOVE, part_size: int = DEFAULT_PART_SIZE,
                 parallel: int = DEFAULT_PARALLEL, state_dir: Path | None = None) -> None:
        self.parts_above = parts_above
        self.part_size = part_size
        self.parallel = parallel
        self.state_dir = state_dir
        self.urls = brain_urls(brain_url)
        self.url = self.urls[0]
        self._moving = threading.Lock()  # parts are sent from several threads
        self.has_key = bool(key)
        self.http = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=5.0),
            headers={"Authorization": f"Bearer {key}"} if key else None,
            verify=client_context(Path(tls_ca) if tls_ca else None),
        )

    def __enter__(self) -> TossitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- plumbing -----------------------------------------------------------

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code < 400:
            return resp
        try:
            resp.read()
            body = resp.json()
            code, message = body.get("error", "error"), body.get("message", resp.text)
        except Exception:
            code, message = "error", resp.text[:300] or resp.reason_phrase
        raise TossitError(resp.status_code, code, message)

    def _failover(self, exc: Exception, tried: int) -> None:
        """The current brain did not answer: go on to the next one, or give up."""
        if tried >= len(self.urls):
            where = self.url if len(self.urls) == 1 else f"any of {', '.join(self.urls)}"
            raise TossitError(
                0, "unreachable",
                f"cannot reach the brain at {where} ({exc}); is it running? (tossit up)",
            ) from None
        self._next_brain(self.url)

    def _next_brain(self, failed: str) -> None:
        """``failed`` did not answer: the next requests go to the next brain listed
        (unless another thread moved on from it already)."""
        with self._moving:
            if self.url != failed or len(self.urls) == 1:
                return
            self.url = self.urls[(self.urls.index(failed) + 1) % len(self.urls)]
            self.http.base_url = httpx.URL(self.url)

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        tried = 0
        while True:
            url = self.url
            try:
                resp = self.http.request(method, path, **kw)
                break
            except httpx.ConnectError as exc:  # nothing was sent: safe to send elsewhere
                tried += 1
                self._failover(exc, tried)
            except httpx.TransportError as exc:
                # Sent, and no answer (the brain died or restarted meanwhile): a read
                # is asked again, elsewhere if there is an elsewhere; a change may
                # have been made, so it is not sent twice.
                if method in ("GET", "HEAD"):
                    tried += 1
                    self._failover(exc, tried)
                    continue
                why = str(exc) or type(exc).__name__
                raise TossitError(
                    0, "no_answer", f"the brain at {url} did not answer ({why}); the "
                    f"{method} may or may not have taken effect: look before trying again "
                    "(tossit ls)") from None
        return self._check(resp).json()

    def _one(self, model: type[Model], method: str, path: str, **kw: Any) -> Model:
        """The answer, parsed into ``model``."""
        return model.model_validate(self._request(method, path, **kw))

    def _many(self, model: type[Model], method: str, path: str, **kw: Any) -> list[Model]:
        return [model.model_validate(item) for item in self._request(method, path, **kw)]

    # -- files --------------------------------------------------------------

    def upload(
        self, source: str | Path | BinaryIO, name: str | None = None,
        progress: Progress | None = None, on_conflict: OnConflict = "replace", *,
        parallel: int | None = None, part_size: int | None = None,
        parts_above: int | None = None, resume: bool = True, notify: Notify | None = None,
    ) -> UploadedFile:
        """Upload a file (path or open binary file) under ``name``, streamed from
        disk: never held in memory whole.

        A path to a file above ``parts_above`` bytes goes in parts, ``parallel``
        at once, and picks up an interrupted upload of the same file to the same
        name (unless ``resume=False``): ``notify`` is told when it resumes or
        starts over. Ctrl-C raises ``UploadInterrupted`` (a KeyboardInterrupt)
        with the upload kept, resumable by the same call."""
        if isinstance(source, str | Path):
            path = Path(source)
            if path.stat().st_size > (self.parts_above if parts_above is None else parts_above):
                options = PartedOptions(part_size or self.part_size, parallel or self.parallel,
                                        resume, self.state_dir)
                return PartedUpload(self, path, name or path.name, options, on_conflict,
                                    progress=progress, notify=notify).run()
            with open(path, "rb") as fh:
                return self.upload(fh, name or path.name, progress, on_conflict)
        if not name:
            raise ValueError("name is required when uploading from a file object")
        headers = {"content-type": "application/octet-stream"}
        try:
            size = os.fstat(source.fileno()).st_size - source.tell()
            headers["content-length"] = str(size)
        except (OSError, AttributeError, ValueError):
            pass

        def pieces() -> Iterator[bytes]:
            while piece := source.read(_PIECE):
                if progress:
                    progress(len(piece))
                yield piece

        return self._one(UploadedFile, "PUT", _file_path(name), content=pieces(),
                         headers=headers, params={"on_conflict": on_conflict})

    # -- resumable uploads (the steps ``upload`` takes for a big file) -------

    def start_upload(self, name: str, on_conflict: OnConflict = "replace",
                     content_type: str | None = None) -> UploadStarted:
        params: dict[str, Any] = {"name": name, "on_conflict": on_conflict}
        if content_type:
            params["content_type"] = content_type
        return self._one(UploadStarted, "POST", "/api/uploads", params=params)

    def upload_part(self, upload_id: str, number: int, content: bytes | Iterator[bytes],
                    size: int, md5: str | None = None) -> UploadPart:
        """Send part ``number`` (``size`` bytes; ``md5``: base64 Content-MD5, which
        the brain checks). A streamed body is never sent twice, so a brain that
        does not answer is an error here (``transfer_failed``: the caller may
        send the part again); one that cannot be reached at all also makes the
        next requests go to the next brain listed."""
        headers = {"content-type": "application/octet-stream", "content-length": str(size)}
        if md5:
            headers["content-md5"] = md5
        url = self.url
        try:
            resp = self.http.put(f"/api/uploads/{upload_id}/parts/{number}", content=content,
                                 headers=headers)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ConnectError):
                self._next_brain(url)
            raise TossitError(0, "transfer_failed", f"part {number}: {exc}") from None
        return UploadPart.model_validate(self._check(resp).json())

    def upload_parts(self, upload_id: str) -> list[UploadPart]:
        """Every part the brain holds for the upload, by number."""
        parts: list[UploadPart] = []
        after = 0
        while True:
            page = self._one(UploadParts, "GET", f"/api/uploads/{upload_id}",
                             params={"after": after})
            parts += page.parts
            if not page.truncated:
                return parts
            after = page.next_after

    def complete_upload(self, upload_id: str, parts: list[tuple[int, str]],
                        on_conflict: OnConflict = "replace") -> CompletedUpload:
        """Make the file from ``parts`` ((number, hex MD5), ascending). The brain
        reads the file once to record its SHA-256: a big file takes a while."""
        body = {"parts": [{"number": n, "md5": md5} for n, md5 in parts]}
        return self._one(CompletedUpload, "POST", f"/api/uploads/{upload_id}/complete",
                         json=body, params={"on_conflict": on_conflict}, timeout=3600)

    def abort_upload(self, upload_id: str) -> UploadAborted:
        return self._one(UploadAborted, "DELETE", f"/api/uploads/{upload_id}")

    def list_uploads(self, prefix: str = "") -> list[UploadStarted]:
        """Uploads in progress (started, neither completed nor aborted), by name."""
        uploads: list[UploadStarted] = []
        marker = {"after_name": "", "after_id": ""}
        while True:
            page = self._one(UploadList, "GET", "/api/uploads",
                             params={"prefix": prefix, **marker})
            uploads += page.uploads
            if not page.truncated:
                return uploads
            marker = {"after_name": page.next_name, "after_id": page.next_id}

    def upload_bytes(self, data: bytes, name: str,
                     on_conflict: OnConflict = "replace") -> UploadedFile:
        return self._one(UploadedFile, "PUT", _file_path(name), content=data,
                         params={"on_conflict": on_conflict})

    def download(
        self, file_id: int, dest: str | Path, progress: Progress | None = None,
    ) -> Downloaded:
        """Download to ``dest`` (a file path), verified against the stored SHA-256."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.tossit-partial")
        tried = 0
        while True:
            try:
                size, digest = self._download_to(file_id, tmp, progress)
                break
            except httpx.TransportError as exc:  # refused, or cut off: ask the next brain
                # (from the start: the file is checked whole against its SHA-256)
                tried += 1
                if tried >= len(self.urls) and not isinstance(exc, httpx.ConnectError):
                    tmp.unlink(missing_ok=True)
                    raise TossitError(0, "transfer_failed", f"download failed: {exc}") from None
                try:
                    self._failover(exc, tried)
                except TossitError:
                    tmp.unlink(missing_ok=True)
                    raise
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        try:
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return Downloaded(file_id, dest, size, digest)
    def _download_to(self, file_id: int, tmp: Path, progress: Progress | None
                     ) -> tuple[int, str]:
        sha = hashlib.sha256()
        size = 0
        try:
            with self.http.stream("GET", f"/api/files/{file_id}/download") as resp:
                self._check(resp)
                expected = resp.headers.get("x-content-sha256")
                length = int(resp.headers.get("content-length", -1))
                with open(tmp, "wb") as out:
                    for piece in resp.iter_bytes(_PIECE):
                        out.write(piece)
                        sha.update(piece)
                        size += len(piece)
                        if progress:
                            progress(len(piece))
                    out.flush()
                    os.fsync(out.fileno())
        except httpx.TransportError:
            raise  # (download() asks the next brain, or says the transfer failed)
        except httpx.HTTPError as exc:
            raise TossitError(0, "transfer_failed", f"download failed: {exc}") from None
        if length >= 0 and size != length:
            raise TossitError(0, "truncated", f"got {size} of {length} bytes")
        if expected and sha.hexdigest() != expected:
            raise TossitError(0, "checksum_mismatch", "downloaded bytes fail the SHA-256 check")
        return size, sha.hexdigest()

    def download_bytes(self, file_id: int) -> bytes:
        resp = self.http.get(f"/api/files/{file_id}/download")
        return self._check(resp).content

    def list_files(self, search: str | None = None, limit: int = 1000, offset: int = 0,
                   prefix: str | None = None, bucket: str | None = None) -> list[FileMeta]:
        """Files newest first, at any depth (``search``: a substring of the name;
        ``bucket``: an S3 bucket's instead of the REST API's own)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if bucket:
            params["bucket"] = bucket
        if search:
            params["search"] = search
        if prefix:
            params["prefix"] = prefix
        return self._many(FileMeta, "GET", "/api/files", params=params)

    def list_buckets(self) -> list[BucketEntry]:
        """The buckets that exist (``default`` always), with their files and bytes."""
        return self._many(BucketEntry, "GET", "/api/buckets")

    def list_folder(self, prefix: str = "", sort: str = "name", order: str = "asc",
                    limit: int = 1000, offset: int = 0) -> list[FolderEntry | FileMeta]:
        """One level of the folder tree under ``prefix`` (``photos/``): its folders
        first, then its files, in the API's order (by name: case-insensitive)."""
        params: dict[str, Any] = {"delimiter": "/", "sort": sort, "order": order,
                                  "limit": limit, "offset": offset}
        if prefix:
            params["prefix"] = prefix
        return _LISTING.validate_python(self._request("GET", "/api/files", params=params))

    def find(self, name: str) -> FileMeta | None:
        for f in self.list_files(search=name, limit=10000):
            if f.name == name:
                return f
        return None

    def file(self, file_id: int) -> FileMeta:
        return self._one(FileMeta, "GET", f"/api/files/{file_id}")

    def info(self, file_id: int) -> FileInfo:
        """The file with its chunk map: where each chunk's copies are."""
        return self._one(FileInfo, "GET", f"/api/files/{file_id}/info")

    def delete(self, file_id: int) -> FileDeleted:
        return self._one(FileDeleted, "DELETE", f"/api/files/{file_id}")

    # -- trash --------------------------------------------------------------

    def trash(self, limit: int = 1000, offset: int = 0) -> TrashPage:
        """Files in the trash, newest first (``files``, ``total``, ``bytes``)."""
        return self._one(TrashPage, "GET", "/api/trash",
                         params={"limit": limit, "offset": offset})

    def restore(self, file_id: int, name: str | None = None,
                on_conflict: OnConflict = "fail") -> FileRestored:
        """Bring a file back from the trash (under ``name``, default its own)."""
        params: dict[str, Any] = {"on_conflict": on_conflict}
        if name is not None:
            params["name"] = name
        return self._one(FileRestored, "POST", f"/api/trash/{file_id}/restore", params=params)

    def purge(self, file_id: int) -> TrashPurged:
        """Delete a file from the trash for good (admin key)."""
        return self._one(TrashPurged, "DELETE", f"/api/trash/{file_id}")

    def empty_trash(self) -> TrashEmptied:
        """Delete everything in the trash for good (admin key)."""
        return self._one(TrashEmptied, "DELETE", "/api/trash", timeout=3600)

    # -- cluster ------------------------------------------------------------

    def nodes(self) -> list[Node]:
        return self._many(Node, "GET", "/api/nodes")

    def node(self, node_id: str) -> Node:
        return self._one(Node, "GET", f"/api/nodes/{quote(node_id, safe='')}")

    def status(self) -> Status:
        return self._one(Status, "GET", "/api/status")

    def drill(self) -> DrillResult:
        """Run a fire drill (can take minutes on a big cluster)."""
        return self._one(DrillResult, "POST", "/api/admin/drill", timeout=3600)

    def events(self, limit: int = 100, kind: str | None = None,
               after: int | None = None) -> list[Event]:
        """Newest first; ``after``: only the events after this id."""
        params: dict[str, Any] = {"limit": limit}
        if kind:
            params["kind"] = kind
        if after is not None:
            params["after"] = after
        return self._many(Event, "GET", "/api/events", params=params)

    def node_impact(self, node_id: str) -> NodeImpact:
        """What stopping, draining or removing the node would do."""
        return self._one(NodeImpact, "GET", f"/api/nodes/{node_id}/impact")

    def drain_node(self, node_id: str) -> Node:
        return self._one(Node, "POST", f"/api/nodes/{node_id}/drain")

    def undrain_node(self, node_id: str) -> Node:
        return self._one(Node, "POST", f"/api/nodes/{node_id}/undrain")

    def remove_node(self, node_id: str) -> NodeRemoved:
        return self._one(NodeRemoved, "DELETE", f"/api/nodes/{node_id}")

    def scrub_status(self) -> ScrubStatus:
        """Every node's background scrub (progress, rate, last full pass)."""
        return self._one(ScrubStatus, "GET", "/api/scrub")

    def scrub(self, action: ScrubAction, node: str | None = None) -> ScrubDone:
        """``start``, ``pause`` or ``resume`` scrubbing on every node (or one)."""
        params = {"node": node} if node else {}
        return self._one(ScrubDone, "POST", f"/api/scrub/{action}", params=params)

    def scrub_rate(self, rate: str | int, node: str | None = None) -> ScrubRateSet:
        """Change the scrub rate (bytes/s, or "200MiB/s") now."""
        return self._one(ScrubRateSet, "PUT", "/api/scrub/rate",
                         json={"rate": rate, "node": node})

    def health(self) -> Health:
        return self._one(Health, "GET", "/health")

    # -- keys ---------------------------------------------------------------

    def create_key(self, name: str, role: str = "readwrite",
                   expires_in: float | None = None) -> KeyCreated:
        """A new key; the answer's ``secret`` is shown this once only."""
        body: dict[str, Any] = {"name": name, "role": role}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return self._one(KeyCreated, "POST", "/api/keys", json=body)

    def list_keys(self) -> list[Key]:
        return self._many(Key, "GET", "/api/keys")

    def revoke_key(self, key_id: str) -> Key:
        return self._one(Key, "DELETE", f"/api/keys/{key_id}")

    def create_join_token(self, expires_in: float = 3600.0, uses: int = 1,
                          brains: list[str] | None = None) -> JoinTokenCreated:
        """A join token for new nodes; the answer's ``token`` is shown this once only."""
        body: dict[str, Any] = {"expires_in": expires_in, "uses": uses}
        if brains:
            body["brains"] = brains
        return self._one(JoinTokenCreated, "POST", "/api/join-tokens", json=body)

    def list_join_tokens(self) -> list[JoinToken]:
        return self._many(JoinToken, "GET", "/api/join-tokens")

    def revoke_join_token(self, token_id: str) -> JoinToken:
        return self._one(JoinToken, "DELETE", f"/api/join-tokens/{quote(token_id, safe='')}")

    def whoami(self) -> Key:
        return self._one(Key, "GET", "/api/keys/me")


def _file_path(name: str) -> str:
    return "/api/files/" + quote(name, safe="/")
