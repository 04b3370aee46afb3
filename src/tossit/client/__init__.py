"""Python SDK for TossIt (the CLI is built on it)."""

from tossit.client.sdk import TossitClient, TossitError

__all__ = ["TossitClient", "TossitError"]
