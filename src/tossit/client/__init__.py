"""Python SDK for TossIt (the CLI is built on it). Answers are the brain's wire
models (``tossit.brain.api.wire``)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tossit.client.resumable import UploadInterrupted
    from tossit.client.sdk import Downloaded, TossitClient, TossitError

__all__ = ["Downloaded", "TossitClient", "TossitError", "UploadInterrupted"]


def __getattr__(name: str) -> Any:
    """Loaded on first use: importing a module of this package (the brain's
    command line imports a few) does not load the HTTP client library."""
    if name == "UploadInterrupted":
        from tossit.client import resumable

        return resumable.UploadInterrupted
    if name in ("Downloaded", "TossitClient", "TossitError"):
        from tossit.client import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
