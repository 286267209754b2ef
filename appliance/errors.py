"""Errors that carry an API error code ; raised by the API and by job handlers alike."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    code = "INTERNAL"
    status_code = 500
    retryable = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationError(AppError):
    code = "VALIDATION_ERROR"
    status_code = 400


class NotFound(AppError):
    code = "NOT_FOUND"
    status_code = 404


class Conflict(AppError):
    code = "CONFLICT"
    status_code = 409


class InsufficientMemory(AppError):
    code = "INSUFFICIENT_MEMORY"
    status_code = 503
    retryable = True


class InsufficientStorage(AppError):
    """The write would leave the data disk with less than its reserve (MISTUDIO_DISK_RESERVE_MB) free."""

    code = "INSUFFICIENT_STORAGE"
    status_code = 507
    retryable = True


class UpstreamUnavailable(AppError):
    code = "UPSTREAM_UNAVAILABLE"
    status_code = 502
    retryable = True
