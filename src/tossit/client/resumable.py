"""A big file sent as parts, several at once, that resumes after an interruption.

The plan (``tossit.client.parts``) cuts the file; ``parallel`` worker threads
each read one part at its offset, hash it (MD5: the brain's part digest) and
send it, so at most ``parallel`` parts are in memory. Before the first part a
state file (``tossit.client.upload_state``) records the upload's id; run again,
the upload asks the brain which parts it holds and sends only those it lacks
or holds with other bytes (a part of the right size is read and hashed, and
skipped if its MD5 matches). The state goes once the upload completes.

A part that fails in passing (no answer, 503, 502...) is sent again after a
pause (``parts.retry_wait``: about 23 s in all), so a brain restarted mid-upload
costs a pause, not the upload.

Ctrl-C stops the workers between two 1 MiB pieces; the upload stays on the
cluster (until ``multipart_keep``) and ``UploadInterrupted`` says which.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tossit.brain.api.wire import CompletedUpload, UploadPart
from tossit.client import parts, upload_state
from tossit.client.errors import TossitError
from tossit.client.parts import (
    HeldPart,
    PartSpan,
    may_be_held,
    part_size_for,
    plan_parts,
    retry_wait,
)
from tossit.client.upload_state import UploadState

if TYPE_CHECKING:
    from tossit.client.sdk import OnConflict, TossitClient

Notify = Callable[[str], None]
BUCKET = "default"  # the bucket the REST API's files live in
_PIECE = 1 << 20


class UploadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a parted upload: it is kept on the cluster, resumable."""

    def __init__(self, upload_id: str, parts_done: int, parts: int) -> None:
        super().__init__(f"upload {upload_id} interrupted with {parts_done} of {parts} parts "
                         "on the cluster")
        self.upload_id = upload_id
        self.parts_done = parts_done
        self.parts = parts


@dataclass(frozen=True)
class PartedOptions:
    """``part_size``: wanted bytes per part (raised for files too big for 10,000
    of them); ``parallel``: parts sent at once; ``resume``: pick up a matching
    interrupted upload; ``state_dir``: where the state files are."""

    part_size: int
    parallel: int
    resume: bool = True
    state_dir: Path | None = None


class _Stopped(Exception):
    """A worker gave up because another failed or the user pressed Ctrl-C."""


class PartedUpload:
    """One run of a parted upload of ``path`` under ``name``."""

    def __init__(self, client: TossitClient, path: Path, name: str, options: PartedOptions,
                 on_conflict: OnConflict = "replace", content_type: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 notify: Notify | None = None) -> None:
        self.client = client
        # Every URL given names the cluster: the one answering may change on failover.
        self.brain = ",".join(client.urls)
        self.path = path.resolve()
        self.name = name
        self.options = options
        self.on_conflict: OnConflict = on_conflict
        self.content_type = content_type
        self.progress = progress or (lambda n: None)
        self.notify = notify or (lambda text: None)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.md5s: dict[int, str] = {}
        self.sent = 0  # parts sent by this run
        self.kept = 0  # parts found on the cluster with the same bytes

    def run(self) -> CompletedUpload:
        st = self.path.stat()
        folder = self.options.state_dir or upload_state.state_dir()
        state_file = upload_state.state_path(folder, self.brain, BUCKET, self.name)
        state, held = self._resume_or_start(state_file, st.st_size, st.st_mtime_ns)
        plan = plan_parts(st.st_size, state.part_size)
        maybe = may_be_held(plan, held)
        if maybe:
            self.notify(f"resuming: {len(maybe)} of {len(plan)} parts already on the cluster")
        try:
            self._send_parts(state.upload_id, plan, held)
        except TossitError as exc:  # the parts stored so far stay: say so
            raise TossitError(exc.status, exc.code, f"{exc.message}; {len(self.md5s)} of "
                              f"{len(plan)} parts are on the cluster (upload "
                              f"{state.upload_id}): run the upload again to resume") from None
        if self.kept:
            self.notify(f"sent {self.sent} of {len(plan)} parts; {self.kept} were already on "
                        "the cluster")
        if self.path.stat().st_mtime_ns != st.st_mtime_ns:
            # Parts read before and after a change would mix two versions of the file.
            raise TossitError(0, "file_changed",
                              f"{self.path} changed during the upload; run it again")
        done = self.client.complete_upload(
            state.upload_id, [(span.number, self.md5s[span.number]) for span in plan],
            on_conflict=self.on_conflict)
        upload_state.forget(state_file)
        return done

    # -- which upload -------------------------------------------------------------

    def _resume_or_start(self, state_file: Path, size: int, mtime_ns: int
                         ) -> tuple[UploadState, dict[int, HeldPart]]:
        """The interrupted upload of this file and the parts the brain holds, or
        a new upload (its state saved before any part is sent)."""
        old = upload_state.load(state_file)
        if old is not None and self.options.resume:
            if old.same_file(self.path, size, mtime_ns):
                held = self._held(old.upload_id)
                if held is not None:
                    return old, held
                self.notify(f"the cluster no longer has the interrupted upload "
                            f"{old.upload_id} (expired or aborted): starting over")
            else:
                self.notify(f"{self.path} changed since the interrupted upload "
                            f"{old.upload_id}: starting over")
                self._abandon(old.upload_id)
        elif old is not None:
            self._abandon(old.upload_id)  # --no-resume: its parts would only wait for expiry
        started = self.client.start_upload(self.name, on_conflict=self.on_conflict,
                                           content_type=self.content_type)
        state = UploadState(started.id, self.brain, BUCKET, self.name, str(self.path),
                            size, mtime_ns, part_size_for(size, self.options.part_size))
        upload_state.save(state_file, state)
        return state, {}

    def _held(self, upload_id: str) -> dict[int, HeldPart] | None:
        try:
            parts = self.client.upload_parts(upload_id)
        except TossitError as exc:
            if exc.status == 404:
                return None
            raise
        return {p.number: HeldPart(p.size, p.md5) for p in parts}

    def _abandon(self, upload_id: str) -> None:
        """Abort an upload this file will not complete (gone already is fine)."""
        try:
            self.client.abort_upload(upload_id)
        except TossitError as exc:
            if exc.status != 404:
                raise

    # -- sending --------------------------------------------------------------------

    def _send_parts(self, upload_id: str, plan: list[PartSpan],
                    held: dict[int, HeldPart]) -> None:
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallel),
                                  thread_name_prefix="tossit-part")
        futures: list[Future[None]] = []
        try:
            with open(self.path, "rb") as fh:
                futures = [pool.submit(self._part, fh.fileno(), upload_id, span,
                                       held.get(span.number)) for span in plan]
                pending: set[Future[None]] = set(futures)
                while pending:
                    # Woken often: Ctrl-C's signal may reach a worker thread, and
                    # its handler runs only once the main thread runs again.
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                    for f in done:
                        exc = f.exception()
                        if exc is not None and not isinstance(exc, _Stopped):
                            raise exc
        except KeyboardInterrupt:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise UploadInterrupted(upload_id, len(self.md5s), len(plan)) from None
        finally:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _part(self, fd: int, upload_id: str, span: PartSpan, held: HeldPart | None) -> None:
        if self.stop.is_set():
            raise _Stopped
        data = os.pread(fd, span.size, span.offset)
        if len(data) != span.size:
            raise TossitError(0, "file_changed",
                              f"{self.path} shrank during the upload; run it again")
        digest = hashlib.md5(data)
        md5 = digest.hexdigest()
        if held is not None and held == HeldPart(span.size, md5):
            self.progress(span.size)
            self._done(span.number, md5, sent=False)
            return
        got = self._send(upload_id, span, memoryview(data),
                         base64.b64encode(digest.digest()).decode())
        if got.md5 != md5:  # the brain checked Content-MD5: never expected
            raise TossitError(0, "bad_digest",
                              f"part {span.number}: the brain stored MD5 {got.md5}, not {md5}")
        self._done(span.number, md5, sent=True)

    def _send(self, upload_id: str, span: PartSpan, data: memoryview, md5: str) -> UploadPart:
        """Send one part, again after a failure in passing (``parts.retry_wait``):
        a brain restarted or a node rebooting mid-upload costs a pause, not the
        upload. The progress given for a failed attempt is taken back."""
        failures = 0
        while True:
            sent = [0]
            try:
                return self.client.upload_part(upload_id, span.number,
                                               self._pieces(data, sent), size=span.size,
                                               md5=md5)
            except TossitError as exc:
                failures += 1
                pause = retry_wait(exc.status, exc.code, failures)
                if pause is None or self.stop.is_set():
                    raise
                self.progress(-sent[0])
                self.notify(f"part {span.number}: {exc.message}; sending it again in "
                            f"{pause:.0f} s (try {failures + 1} of {len(parts.RETRY_WAITS) + 1})")
                if self.stop.wait(pause):
                    raise _Stopped from None

    def _pieces(self, data: memoryview, sent: list[int]) -> Iterator[bytes]:
        """The part in pieces, counted as they go (in ``sent`` too), stopping at
        Ctrl-C or another part's failure (the brain drops the part it was
        receiving)."""
        for start in range(0, len(data), _PIECE):
            if self.stop.is_set():
                raise _Stopped
            piece = data[start:start + _PIECE]
            yield bytes(piece)
            sent[0] += len(piece)
            self.progress(len(piece))

    def _done(self, number: int, md5: str, sent: bool) -> None:
        with self.lock:
            self.md5s[number] = md5
            if sent:
                self.sent += 1
            else:
                self.kept += 1
