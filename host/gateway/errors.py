"""The one place where Nimbus errors become HTTP status codes and JSON bodies.

A function's own failures (crash, out of memory, ABI violation) answer 502 with the
error kind and the request id only: the details are in the invocation's log, never
in a response a stranger can read. A storage fault is retryable and says so: 507
(the disk is full) or 503, with ``Retry-After``, naming the data dir.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from host import errors as e

log = logging.getLogger("nimbus.gateway")

STATUS: dict[type[e.NimbusError], int] = {
    e.FunctionNotFound: 404,
    e.NotFound: 404,
    e.InvalidRequest: 400,
    e.ManifestError: 400,
    e.DeployError: 400,
    e.BuildError: 400,
    e.InvalidArgument: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.PermissionDenied: 403,
    e.ConditionFailed: 409,
    e.PayloadTooLarge: 413,
    e.TooLarge: 413,
    e.Overloaded: 429,
    e.RateLimited: 429,
    e.FunctionTimeout: 504,
    e.FunctionCrashed: 502,
    e.FunctionOutOfMemory: 502,
    e.AbiError: 502,
    e.ResponseTooLarge: 502,
    e.FunctionFailed: 502,
    e.ServiceUnavailable: 503,
    e.StorageFull: 507,
    e.OutboundTimeout: 504,
    e.LimitExceeded: 429,
}

#: errors whose message is about the function's insides: not shown to HTTP callers
_PRIVATE = (e.FunctionCrashed, e.FunctionOutOfMemory, e.AbiError, e.ResponseTooLarge)

_PUBLIC_MESSAGE = {
    e.FunctionCrashed: "the function crashed",
    e.FunctionOutOfMemory: "the function ran out of memory",
    e.AbiError: "the function returned an invalid response",
    e.ResponseTooLarge: "the function's response is over its size limit",
}


def status_for(err: e.NimbusError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(err: BaseException, request_id: str) -> JSONResponse:
    """The JSON response for ``err``; unexpected exceptions are logged, not shown."""
    if isinstance(err, e.NimbusError):
        status = status_for(err)
        message = str(err)
        if isinstance(err, _PRIVATE):
            message = _PUBLIC_MESSAGE.get(type(err), "the function failed")
        kind = err.kind
    else:
        log.error("[%s] internal error", request_id, exc_info=err)
        status, kind, message = 500, "InternalError", "internal error"
    body = {"error": {"kind": kind, "message": message, "request_id": request_id}}
    headers = {"x-request-id": request_id}
    if isinstance(err, e.Unauthorized):
        headers["www-authenticate"] = err.challenge
    elif isinstance(err, e.RateLimited):
        headers.update(err.headers)
    elif isinstance(err, e.ServiceUnavailable | e.Overloaded):  # retryable: say when
        headers["retry-after"] = str(getattr(err, "retry_after_s", 1))
    return JSONResponse(body, status_code=status, headers=headers)
