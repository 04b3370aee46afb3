"""Python SDK for TossIt (the CLI is built on it). Answers are the brain's wire
models (``tossit.brain.api.wire``)."""

from tossit.client.resumable import UploadInterrupted
from tossit.client.sdk import Downloaded, TossitClient, TossitError

__all__ = ["Downloaded", "TossitClient", "TossitError", "UploadInterrupted"]
