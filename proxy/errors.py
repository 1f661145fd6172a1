"""The error tree. The web middleware maps it to responses once; the CLI prints the message and exits 2.

HubgateError                      500  (unexpected; message still stands alone)
├── BadRequest                    400  malformed repo id, path with `..`, bad revision
├── Refused                       403  X-Error-Code: GatedRepo (the only shape whose text reaches HF users)
│   ├── Blocked                        policy or admin blocked/rejected the file
│   ├── Quarantined                    held for an admin
│   └── IntegrityError                 the bytes are not what the upstream promised (size / hash)
├── VettingInProgress             429  Retry-After; the HF client retries by itself
├── UpstreamError                 502  upstream unreachable, misbehaving, or a transfer cut (retryable)
├── UpstreamStatus                any  an upstream 4xx passed through with its X-Error-Code
├── NotInOfflineCache             404  offline mode and nothing vetted for this request
├── Unavailable                   503  Redis or storage unreachable: never bytes
└── Unauthorized                  401  admin API without a valid token
"""

from __future__ import annotations


class HubgateError(Exception):
    status: int = 500
    error_code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(HubgateError):
    status = 400
    error_code = "BadRequest"


class Refused(HubgateError):
    status = 403
    error_code = "GatedRepo"

    def __init__(self, message: str, *, artifact_id: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.artifact_id = artifact_id


class Blocked(Refused):
    pass


class Quarantined(Refused):
    pass


class VettingInProgress(HubgateError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UpstreamError(HubgateError):
    status = 502


class IntegrityError(Refused):
    """A refusal, not a 5xx: clients retry 5xx for ~20 s and then hide the message in `__cause__`."""


class UpstreamStatus(HubgateError):
    """An upstream 4xx answer relayed to the client with its own error code (RepoNotFound, ...)."""

    def __init__(self, status: int, message: str, *, error_code: str | None, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.error_code = error_code


class NotInOfflineCache(HubgateError):
    status = 404
    error_code = "EntryNotFound"


class Unavailable(HubgateError):
    status = 503


class Unauthorized(HubgateError):
    status = 401
