"""One error hierarchy for server and clients, mirroring Kubernetes' StatusError reasons.

The API server raises these; the gRPC layer maps each to a status code and back, so a client
catches the same class the server raised. Codes are gRPC's numeric codes (kept numeric so this
package does not depend on grpc).
"""

from __future__ import annotations

from typing import NamedTuple

# gRPC status codes (grpc.StatusCode values), by number.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16


class StatusError(Exception):
    """An API error with Kubernetes' reason and a gRPC code."""

    code: int = UNKNOWN
    reason: str = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadRequest(StatusError):
    code = INVALID_ARGUMENT
    reason = "BadRequest"


class Invalid(StatusError):
    code = INVALID_ARGUMENT
    reason = "Invalid"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFound(StatusError):
    code = NOT_FOUND
    reason = "NotFound"


class AlreadyExists(StatusError):
    code = ALREADY_EXISTS
    reason = "AlreadyExists"


class Conflict(StatusError):
    code = ABORTED
    reason = "Conflict"


class Gone(StatusError):
    """A watch asked for a resourceVersion older than the server's event window (HTTP 410)."""

    code = OUT_OF_RANGE
    reason = "Expired"


class Unauthorized(StatusError):
    """No credentials, or credentials the server does not accept (HTTP 401)."""

    code = UNAUTHENTICATED
    reason = "Unauthorized"


class Forbidden(StatusError):
    """Not allowed (HTTP 403): refused by authorization or an admission rule."""

    code = PERMISSION_DENIED
    reason = "Forbidden"


class MethodNotAllowed(StatusError):
    """The resource does not serve this verb (HTTP 405): an access review is only created."""

    code = UNIMPLEMENTED
    reason = "MethodNotAllowed"


class TooLarge(StatusError):
    """A request or the object it would store is over a size limit (HTTP 413)."""

    code = RESOURCE_EXHAUSTED
    reason = "RequestEntityTooLarge"


class TooManyRequests(StatusError):
    """The server has too many requests in flight; wait and retry (HTTP 429)."""

    code = RESOURCE_EXHAUSTED
    reason = "TooManyRequests"


class Unavailable(StatusError):
    code = UNAVAILABLE
    reason = "ServiceUnavailable"


class InternalError(StatusError):
    code = INTERNAL
    reason = "InternalError"


class Timeout(StatusError):
    code = DEADLINE_EXCEEDED
    reason = "Timeout"


_BY_REASON: dict[str, type[StatusError]] = {
    cls.reason: cls
    for cls in (BadRequest, Invalid, NotFound, AlreadyExists, Conflict, Gone, Unauthorized, Forbidden, TooLarge,
                TooManyRequests, Unavailable, InternalError, Timeout, MethodNotAllowed)
}
_BY_CODE: dict[int, type[StatusError]] = {
    INVALID_ARGUMENT: BadRequest,
    NOT_FOUND: NotFound,
    ALREADY_EXISTS: AlreadyExists,
    ABORTED: Conflict,
    OUT_OF_RANGE: Gone,
    PERMISSION_DENIED: Forbidden,
    FAILED_PRECONDITION: Forbidden,  # what servers before PERMISSION_DENIED sent
    RESOURCE_EXHAUSTED: TooLarge,
    UNAVAILABLE: Unavailable,
    DEADLINE_EXCEEDED: Timeout,
    UNAUTHENTICATED: Unauthorized,
    INTERNAL: InternalError,
}


def from_code(code: int, message: str, reason: str = "") -> StatusError:
    """Rebuild the error a server raised from its code, message and reason."""
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, StatusError)
    err = cls(message)
    if cls is StatusError:
        err.code = code
    return err







# ---------------------------------------------------------------------------------------------
# Field errors, in the form Kubernetes' apimachinery validation prints them.

_TYPE_TEXT = {
    "Invalid": "Invalid value",
    "Required": "Required value",
    "Forbidden": "Forbidden",
    "NotSupported": "Unsupported value",
    "Duplicate": "Duplicate value",
    "TooLong": "Too long",
    "TooMany": "Too many",
    "NotFound": "Not found",
}


# A longer invalid string is shown by its start and length (limits.clip's form): the error must
# still say what is wrong with it, and reach the client (server.py clips a whole message past
# what gRPC's trailers carry).
MAX_VALUE_SHOWN = 1024


def clip(text: str, keep: int = 80) -> str:
    """Text for an error message: a long input is shown by its start and length only."""
    if len(text) <= keep:
        return text
    return f"{text[:keep]}... ({len(text)} characters)"


def _render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + clip(value, MAX_VALUE_SHOWN) + '"'
    if value is None:
        return "null"
    return str(value)


class FieldError(NamedTuple):
    """One bad field: `spec.parallelism: Invalid value: -1: must be greater than or equal to 0`.
    (A NamedTuple: every CLI command loads this module, and a frozen dataclass costs ~1 ms.)"""

    type: str
    field: str
    detail: str = ""
    value: object = None
    has_value: bool = False

    def __str__(self) -> str:
        text = f"{self.field}: {_TYPE_TEXT.get(self.type, self.type)}"
        if self.type == "NotSupported" and self.has_value:
            return f"{text}: {_render_value(self.value)}: {self.detail}"
        if self.has_value and self.type in ("Invalid", "Duplicate", "NotFound"):
            text += f": {_render_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text


def invalid(field: str, value: object, detail: str) -> FieldError:
    return FieldError("Invalid", field, detail, value, True)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail)


def not_supported(field: str, value: object, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{s}"' for s in supported)
    return FieldError("NotSupported", field, detail, value, True)


def duplicate(field: str, value: object) -> FieldError:
    return FieldError("Duplicate", field, "", value, True)


def not_found(field: str, value: object) -> FieldError:
    return FieldError("NotFound", field, "", value, True)


def too_long(field: str, max_len: int) -> FieldError:
    return FieldError("TooLong", field, f"may not be more than {max_len} bytes")


def too_many(field: str, actual: int, max_items: int) -> FieldError:
    return FieldError("TooMany", field, f"{actual}: must have at most {max_items} items")


def invalid_error(kind: str, name: str, errors: list[FieldError]) -> Invalid:
    """`The Job "pi" is invalid: a: ..., b: ...` (one error) or with a bracketed list (several)."""
    if len(errors) == 1:
        body = str(errors[0])
    else:
        body = "[" + ", ".join(str(e) for e in errors) + "]"
    return Invalid(f'The {kind} "{name}" is invalid: {body}', errors)
