"""Streaming ``multipart/form-data`` for uploads of any size.

FastAPI's ``UploadFile`` spools the whole part to a temporary file before the
handler runs; that is a full copy of every upload on the brain's disk. This
reader drives python-multipart's push parser from the request stream and hands
the ``file`` part's bytes to the caller as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from tossit.errors import ApiError


class MultipartError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "invalid_multipart", message)


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str | None = None


@dataclass
class FilePart:
    field_name: str
    filename: str
    content_type: str | None
    body: AsyncIterator[bytes]


class StreamingMultipart:
    """Feeds request pieces to the parser and yields parsed events lazily."""

    def __init__(self, content_type_header: str, stream: AsyncIterator[bytes]) -> None:
        ctype, params = parse_options_header(content_type_header)
        if ctype != b"multipart/form-data":
            raise MultipartError("expected a multipart/form-data body with a 'file' field")
        boundary = params.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise MultipartError("multipart body has no valid boundary")
        self._stream = stream
        self._events: list[tuple[str, object]] = []
        self._field = b""
        self._value = b""
        self._part = _Part()
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_count=16,
            max_header_size=8192,
        )

    # parser callbacks: collect events for the consumer
    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        field = self._field.decode("latin-1").lower()
        try:
            value = self._value.decode("utf-8")
        except UnicodeDecodeError:
            # Replaced silently, a bad byte in a file name became U+FFFD in the
            # stored name: the client would never find its file under its name.
            self._events.append(("error", f"the part's {field} header is not valid UTF-8"))
            value = self._value.decode("utf-8", "replace")
        self._part.headers[field] = value
        self._field = self._value = b""

    def _on_headers_finished(self) -> None:
        disp = self._part.headers.get("content-disposition", "")
        # As bytes: given a str, the parser encodes it to latin-1 and fails on
        # UTF-8 filenames (which browsers and curl send raw).
        kind, params = parse_options_header(disp.encode("utf-8"))
        if kind != b"form-data":
            self._events.append(("error", "a part has no form-data Content-Disposition"))
            return
        self._part.name = params.get(b"name", b"").decode("utf-8", "replace")
        fn = params.get(b"filename")
        self._part.filename = None if fn is None else fn.decode("utf-8", "replace")
        self._part.content_type = self._part.headers.get("content-type")
        self._events.append(("part", self._part))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._ended = True

    async def _next_event(self) -> tuple[str, object] | None:
        while not self._events:
            try:
                piece = await anext(self._stream)
            except StopAsyncIteration:
                if not self._ended:
                    raise MultipartError(
                        "the multipart body ended before its final boundary") from None
                return None
            try:
                self._parser.write(piece)
            except Exception as exc:  # python-multipart raises its own error types
                raise MultipartError(f"malformed multipart body: {exc}") from None
        return self._events.pop(0)

    async def file_part(self, field_name: str = "file") -> FilePart:
        """Skip to the part named ``field_name`` that carries a file."""
        while True:
            ev = await self._next_event()
            if ev is None:
                raise MultipartError(
                    f"no '{field_name}' field in the form (use -F {field_name}=@PATH)")
            kind, payload = ev
            if kind == "error":
                raise MultipartError(str(payload))
            if kind == "part":
                assert isinstance(payload, _Part)
                if payload.name == field_name:
                    if payload.filename is None:
                        raise MultipartError(
                            f"the '{field_name}' field must be a file (use -F {field_name}=@PATH)"
                        )
                    return FilePart(field_name, payload.filename, payload.content_type,
                                    self._part_body())

    async def _part_body(self) -> AsyncIterator[bytes]:
        while True:
            ev = await self._next_event()
            if ev is None:
                raise MultipartError("the multipart body ended inside the file part")
            kind, payload = ev
            if kind == "data":
                assert isinstance(payload, bytes)
                if payload:
                    yield payload
            elif kind == "end":
                return
            elif kind == "error":
                raise MultipartError(str(payload))

    async def drain(self) -> None:
        """Consume the rest of the body (the closing boundary) after the file part."""
        while await self._next_event() is not None:
            pass
