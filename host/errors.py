"""Every error Nimbus raises on purpose, in one hierarchy.

Each class carries a message a user can act on and a stable ``kind`` string that
crosses the HTTP boundary and lands in invocation records. The gateway maps these
classes to status codes in one place (``host/gateway/errors.py``); nothing else
decides a status code.
"""

from __future__ import annotations


class NimbusError(Exception):
    """The root of every error Nimbus raises on purpose."""

    kind = "NimbusError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration and deployment -------------------------------------------------


class ManifestError(NimbusError):
    """The app manifest (nimbus.toml) or a function.toml is wrong; says where and how."""

    kind = "ManifestError"


class BuildError(NimbusError):
    """Compiling a function's sources failed; carries the compiler's output verbatim."""

    kind = "BuildError"

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class DeployError(NimbusError):
    """A module cannot be deployed: invalid wasm, wrong ABI, imports the host lacks."""

    kind = "DeployError"


class FunctionNotFound(NimbusError):
    """No function (or version) of that name is deployed."""

    kind = "FunctionNotFound"


class NotFound(NimbusError):
    """A named thing other than a function (a workflow run, a route) does not exist."""

    kind = "NotFound"


class InvalidRequest(NimbusError):
    """A caller's request to the platform is malformed; the message says what to fix."""

    kind = "InvalidRequest"


class PermissionDenied(NimbusError):
    """A function reached for a service its manifest does not grant."""

    kind = "PermissionDenied"


class Unauthorized(NimbusError):
    """A call came without valid credentials (missing, wrong, expired, revoked);
    ``challenge`` is the ``WWW-Authenticate`` value that says what to send."""

    kind = "Unauthorized"

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(NimbusError):
    """The caller is known but not allowed (wrong admin token, a denied route)."""

    kind = "Forbidden"


class RateLimited(NimbusError):
    """A caller is over a route's rate limit; ``headers`` say when to come back."""

    kind = "RateLimited"

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class QuotaExceeded(RateLimited):
    """A caller used up its calls for the day or the month (a usage plan)."""

    kind = "QuotaExceeded"


# --- invocation -------------------------------------------------------------------


class InvocationError(NimbusError):
    """An invocation did not produce a response; the host keeps serving."""

    kind = "InvocationError"


class FunctionTimeout(InvocationError):
    """The guest ran past its wall-clock limit and was interrupted by the engine."""

    kind = "FunctionTimeout"


class FunctionOutOfMemory(InvocationError):
    """The guest tried to grow its linear memory past its cap."""

    kind = "FunctionOutOfMemory"


class FunctionCrashed(InvocationError):
    """The guest trapped or panicked; carries the trap or panic message."""

    kind = "FunctionCrashed"


class AbiError(InvocationError):
    """The guest broke the ABI contract (guest_sdk/ABI.md); says which part."""

    kind = "AbiError"


class PayloadTooLarge(InvocationError):
    """A request or event is over the function's payload cap."""

    kind = "PayloadTooLarge"


class ResponseTooLarge(InvocationError):
    """A function's response is over its payload cap."""

    kind = "ResponseTooLarge"


class FunctionFailed(InvocationError):
    """The guest returned a response with an ``error``: a handled, retryable failure."""

    kind = "FunctionFailed"

    def __init__(self, message: str, error_kind: str = "Error") -> None:
        super().__init__(message)
        self.error_kind = error_kind


class Overloaded(InvocationError):
    """The function is at its concurrency limit; retry later."""

    kind = "Overloaded"


class Throttled(Overloaded):
    """The function stayed at its ``max_concurrency`` for as long as a call may wait
    for a slot: nothing ran. HTTP callers get 429 with ``Retry-After``; triggers put
    the message back without spending an attempt."""

    kind = "Throttled"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# --- managed services -------------------------------------------------------------


class ServiceError(NimbusError):
    """A managed-service operation failed for a reason the caller can act on."""

    kind = "ServiceError"


class InvalidArgument(ServiceError):
    """A service request has a wrong field, type or name."""

    kind = "InvalidArgument"


class ConditionFailed(ServiceError):
    """A conditional write's condition (if_absent, if_version) did not hold."""

    kind = "ConditionFailed"


class TooLarge(ServiceError):
    """A value or object is over its documented cap."""

    kind = "TooLarge"


class ServiceUnavailable(ServiceError):
    """The storage layer could not answer; retrying later may succeed."""

    kind = "ServiceUnavailable"


class StorageUnavailable(ServiceUnavailable):
    """The data dir could not take a write (an I/O error on commit); nothing of the
    write was applied, reads keep working, and retrying later may succeed."""

    kind = "StorageUnavailable"

    def __init__(self, message: str, path: str = "", retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.path = path
        self.retry_after_s = retry_after_s


class StorageFull(StorageUnavailable):
    """The disk holding the data dir is full: nothing of the write was applied, reads
    keep working, and writes resume by themselves once space is freed."""

    kind = "StorageFull"


class OutboundTimeout(ServiceError):
    """An outbound HTTP request took longer than the timeout the guest gave it (the
    invocation's own deadline ends the invocation instead: ``FunctionTimeout``)."""

    kind = "OutboundTimeout"


class LimitExceeded(ServiceError):
    """A per-invocation count is used up (e.g. 32 outbound requests)."""

    kind = "LimitExceeded"
