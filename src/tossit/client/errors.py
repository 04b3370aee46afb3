"""The one error the client raises: an error answer of the brain (its status and
``ErrorBody`` code), or a failure of its own with status 0 (unreachable brain,
truncated download, a file changed while it was uploaded)."""

from __future__ import annotations


class TossitError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})" if status else message)
        self.status = status
        self.code = code
        self.message = message
