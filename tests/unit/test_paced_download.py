"""Streamed downloads go out in slices that the client must take in time: one
that stops reading is cut off instead of holding its connection and the chunks
read ahead for it for ever (PacedStreamingResponse, no servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tossit.brain.api import common
from tossit.brain.api.common import SEND_SLICE, PacedStreamingResponse

SCOPE = {"type": "http", "method": "GET", "path": "/x", "asgi": {"spec_version": "2.3"},
         "headers": []}


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


async def body(*pieces: bytes) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


def test_a_big_piece_goes_out_in_slices_in_order() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    data = bytes(range(256)) * (SEND_SLICE // 256 * 2 + 3)  # 2 slices and a bit
    asyncio.run(PacedStreamingResponse(body(data, b"tail"))(SCOPE, never, send))
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(bytes(m["body"]) for m in bodies) == data + b"tail"
    assert [len(m["body"]) for m in bodies[:3]] == [SEND_SLICE, SEND_SLICE, 3 * 256]
    assert all(m["more_body"] for m in bodies[:-1]) and not bodies[-1].get("more_body")


def test_a_reader_that_takes_nothing_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "SEND_TIMEOUT", 0.2)
    started: list[bool] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(True)
            return
        await asyncio.Event().wait()  # the client's window stays shut

    async def run() -> None:
        await asyncio.wait_for(
            PacedStreamingResponse(body(b"x" * 1000, b"y"))(SCOPE, never, send), 5)

    asyncio.run(run())  # returns: cut off, no exception for the server to log
    assert started == [True]
