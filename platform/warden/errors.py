"""Warden's one error family; the API renders each as {"error": ClassName, "detail": message}.

WardenError (500)
├── BadRequest (400)
│   └── InvalidFilter (400)
├── Unauthenticated (401)
├── Forbidden (403)
├── NotFound (404)
├── Conflict (409)
├── PayloadTooLarge (413)
├── Unprocessable (422)
└── Unavailable (503)
    ├── AuditUnavailable (503)
    ├── PolicyUnavailable (503)
    └── StorageUnavailable (503)
"""

from __future__ import annotations


class WardenError(Exception):
    status_code = 500
    # Set once the refusal has its own audit event (a read's deny, a refused launch), so the
    # API's edge does not count it a second time (api/errors.py).
    audited = False
    # A 503 that is a refusal, not an outage (the log answers, but what a decision depends on
    # is not the chain's own): the edge audits it as it does a 403 (api/errors.py).
    audit_refusal = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(WardenError):
    status_code = 400


class InvalidFilter(BadRequest):
    pass


class Unauthenticated(WardenError):
    status_code = 401


class Forbidden(WardenError):
    status_code = 403


class NotFound(WardenError):
    status_code = 404


class Conflict(WardenError):
    status_code = 409


class PayloadTooLarge(WardenError):
    status_code = 413


class Unprocessable(WardenError):
    status_code = 422


class Unavailable(WardenError):
    status_code = 503


class AuditUnavailable(Unavailable):
    pass


class PolicyUnavailable(Unavailable):
    pass


class StorageUnavailable(Unavailable):
    """Dataset storage could not be reached, refused the platform's credentials, has no such
    bucket, or holds an object that is not the dataset file it should be."""


__all__ = [
    "AuditUnavailable",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidFilter",
    "NotFound",
    "PayloadTooLarge",
    "PolicyUnavailable",
    "StorageUnavailable",
    "Unauthenticated",
    "Unavailable",
    "Unprocessable",
    "WardenError",
]
