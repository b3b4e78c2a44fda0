"""The ``secret_get`` import: a granted secret's value, read at the time of the call.

``secret_get(req_ptr, req_len) -> i64`` takes ``{name}`` and answers ``[0, bin]``, or
``[0, nil]`` for a granted secret that is not set, or ``[1, message]`` when the
manifest does not list the name in the function's ``secrets``. The value is read from
the store on each call, so a rotated secret is what the next invocation sees. The
host never writes a value to a log line, an invocation record or an error message;
and what a record keeps of an invocation that read one (its logs, the previews of
its event and response) has every value it read replaced by ``[secret]``.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack

from host.errors import AbiError, PermissionDenied, ServiceError
from host.hostcalls.http import STATUS
from host.hostcalls.wire import decode_request
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation
from host.services.secrets import Secrets, check_secret_name

log = logging.getLogger("nimbus.secrets")

MAX_REQUEST_BYTES = 4096


class SecretAccess:
    """One invocation's view of the secrets: the names its function is granted."""

    __slots__ = ("granted", "seen", "store")

    def __init__(self, store: Secrets, granted: tuple[str, ...]) -> None:
        self.store, self.granted = store, granted
        #: the values this invocation read: masked in what its record keeps
        self.seen: list[bytes] = []


def serve(inv: Invocation, request: bytes) -> bytes:
    """The msgpack ``[status, value]`` answer to one ``secret_get`` request."""
    try:
        name = check_secret_name(decode_request(request).get("name"))
        access = inv.secrets
        if not isinstance(access, SecretAccess) or name not in access.granted:
            message = (
                f"function {inv.function} is not granted secret {name}; add it to "
                f'[functions.{inv.function}] secrets = ["{name}"] in nimbus.toml'
            )
            log.warning("[%s] denied: %s", inv.request_id, message)
            inv.log(2, f"permission denied: {message}")
            raise PermissionDenied(message)
        value = access.store.get(name)
        if value is not None:
            access.seen.append(value)
        if value is None:
            inv.log(2, f"secret {name} is granted but not set (nimbus secrets set {name})")
    except (ValueError, msgpack.UnpackException) as e:
        return _reply(2, f"the request is not msgpack: {e}")
    except (ServiceError, PermissionDenied) as e:
        return _reply(next((code for cls, code in STATUS if isinstance(e, cls)), 5), str(e))
    return _reply(0, value)


def _reply(status: int, value: Any) -> bytes:
    packed: bytes = msgpack.packb([status, value], use_bin_type=True)
    return packed


def secret_get(inv: Invocation, ptr: int, length: int) -> int:
    if length > MAX_REQUEST_BYTES:
        raise inv.fail(AbiError(f"a secret_get request of {length} bytes is over the cap"))
    return inv.give(serve(inv, inv.read(ptr, length)))


FUNCTIONS = (HostFunction("secret_get", ("i32", "i32"), ("i64",), secret_get),)
