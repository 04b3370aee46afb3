"""``GET /api/stream``: the dashboard's live feed, as server-sent events.

One producer serves every open page: while at least one client listens, the
brain works out the status and the node list once per interval and reads the
events that arrived since the last look, then hands the same messages to every
listener. A hundred open tabs cost one status query every two seconds, not a
hundred. A listener that falls behind loses old messages, never blocks the
others: each message is a full state, so the next one catches it up.

Events: ``status`` (the ``GET /api/status`` body), ``nodes`` (``GET /api/nodes``),
``event`` (one new entry of ``GET /api/events``), and ``auth`` just before the
brain closes a stream whose key was revoked or expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from tossit.auth.keys import Role
from tossit.brain.api.access import Access
from tossit.brain.api.cluster import event_json, status_body
from tossit.brain.api.nodes import nodes_body
from tossit.brain.service import Brain
from tossit.errors import ApiError

router = APIRouter(tags=["cluster"])
log = logging.getLogger("tossit.brain.stream")
INTERVAL = 2.0
KEEPALIVE = 15.0
RECHECK_KEY = 10.0
MAX_LISTENERS = 200
# One key (a readonly one found in a script, say) must not hold every slot and
# lock the admin out: a person with several tabs needs a few, not 200.
MAX_PER_KEY = 8
_QUEUE = 16
_MISSED = 200  # events sent at most per pass, and to a (re)connecting client
_END = ": end of stream\n\n"  # put in a queue (compared by identity): ends that stream


_EVENT_SCHEMA = {
    "type": "object", "description": "one server-sent event; `data` is JSON",
    "properties": {"event": {"type": "string", "enum": ["status", "nodes", "event", "auth"]},
                   "data": {"type": "string"}, "retry": {"type": "integer"}},
}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _offer(queue: asyncio.Queue[str], msg: str) -> None:
    """Queue ``msg``; a slow reader whose queue is full loses its oldest message."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(msg)


class LiveFeed:
    def __init__(self, brain: Brain, interval: float = INTERVAL) -> None:
        self.brain = brain
        self.interval = interval
        self._listeners: set[asyncio.Queue[str]] = set()
        self._per_key: dict[asyncio.Queue[str], str] = {}  # listener -> its key id
        self._latest: list[str] = []  # the last status and nodes messages
        self._last_event: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def close_all(self) -> None:
        """End every open stream (the brain is shutting down). Safe to call from
        a signal handler: the work is handed to the event loop."""
        self._closed = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        for queue in self._listeners:
            _offer(queue, _END)

    async def subscribe(self, after: int | None = None, key: str = ""
                        ) -> tuple[asyncio.Queue[str], list[str]]:
        """A queue of what comes next, and the events after ``after`` (the newest
        one the client already has) that it missed: no event falls in between.
        ``key``: the caller's key id, for the per-key limit."""
        if self._closed:
            raise ApiError(503, "shutting_down", "the brain is shutting down")
        self._loop = asyncio.get_running_loop()
        if len(self._listeners) >= MAX_LISTENERS:
            raise ApiError(503, "too_many_streams",
                           f"{MAX_LISTENERS} live streams are open already; try again later")
        if sum(1 for k in self._per_key.values() if k == key) >= MAX_PER_KEY:
            raise ApiError(429, "too_many_streams",
                           f"this key has {MAX_PER_KEY} live streams open already (each "
                           "dashboard tab holds one); close one and try again",
                           headers={"Retry-After": "10"})
        queue: asyncio.Queue[str] = asyncio.Queue(_QUEUE)
        self._per_key[queue] = key
        for msg in self._latest:
            queue.put_nowait(msg)
        self._listeners.add(queue)
        if self._last_event is None:  # the first listener: events after now go out
            newest = await self.brain.store.list_events(limit=1)
            if self._last_event is None:
                self._last_event = newest[0].id if newest else 0
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="live-feed")
        # Read after the shared cursor is set, so the two overlap rather than
        # leave a gap (clients drop an event id they have already seen).
        missed = [] if after is None else await self.brain.store.list_events(
            limit=_MISSED, after_id=after)
        return queue, [_sse("event", event_json(e, self.brain)) for e in reversed(missed)]

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)
        self._per_key.pop(queue, None)
        if not self._listeners and self._task is not None:
            self._task.cancel()
            self._task = None
            self._latest = []
            self._last_event = None  # the next listener starts from now, not from here

    async def _run(self) -> None:
        while self._listeners:
            started = time.monotonic()
            try:
                messages = await self._collect()
            except Exception:
                log.exception("live feed: could not collect the cluster state")
                messages = []
            for queue in list(self._listeners):
                for msg in messages:
                    _offer(queue, msg)
            # A cluster so big that a status query takes long is asked less often.
            spent = time.monotonic() - started
            await asyncio.sleep(max(self.interval, 5 * spent))

    async def _collect(self) -> list[str]:
        brain = self.brain
        self._latest = [_sse("status", await status_body(brain)),
                        _sse("nodes", nodes_body(brain))]
        out = list(self._latest)
        if self._last_event is not None:
            fresh = await brain.store.list_events(limit=_MISSED, after_id=self._last_event)
            if fresh:
                self._last_event = fresh[0].id
                out += [_sse("event", event_json(e, brain)) for e in reversed(fresh)]
        return out


@router.get("/api/stream", summary="Live status, nodes and events (server-sent events)",
            response_class=StreamingResponse,
            responses={200: {"description": "events `status`, `nodes`, `event`, `auth`",
                             "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}}}})
async def stream(
    request: Request,
    after: int | None = Query(None, ge=0, le=2**62, description=(
        "the newest event id the client has: the events after it come first")),
) -> StreamingResponse:
    feed: LiveFeed = request.app.state.feed
    key = getattr(request.state, "key", None)
    queue, missed = await feed.subscribe(after, key=getattr(key, "id", "") or "")
    check = Access(Role.readonly)

    async def body() -> AsyncIterator[str]:
        try:
            yield f"retry: {int(INTERVAL * 1500)}\n\n"
            for msg in missed:
                yield msg
            checked = time.monotonic()
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    msg = ": keep-alive\n\n"
                if msg is _END:
                    return
                if time.monotonic() - checked >= RECHECK_KEY:
                    checked = time.monotonic()
                    try:
                        await check(request)
                    except ApiError as exc:
                        yield _sse("auth", exc.body())
                        return
                yield msg
        finally:
            feed.unsubscribe(queue)

    return StreamingResponse(body(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
