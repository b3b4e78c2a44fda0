"""The admin API's bearer token: generated on first start, or given by the environment.

The token is ``NIMBUS_ADMIN_TOKEN`` when set, else the content of
``<data dir>/admin_token``, created with mode 0600 on first start.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
from pathlib import Path

from host.errors import Forbidden, Unauthorized

ENV_VAR = "NIMBUS_ADMIN_TOKEN"
TOKEN_FILE = "admin_token"


def load_or_create_token(data_dir: Path) -> str:
    """The admin token for ``data_dir``, creating the token file if needed."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env
    path = data_dir / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".admin_token.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.link(tmp, path)  # fails if another process created the token first
    except FileExistsError:
        return path.read_text().strip()
    finally:
        os.unlink(tmp)
    return token


class AdminAuth:
    """Checks an ``Authorization: Bearer …`` header against the token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, header: str | None) -> None:
        if not header:
            raise Unauthorized("the admin API needs 'Authorization: Bearer <token>'")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("the admin API needs 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(value.strip().encode(), self._token):
            raise Forbidden("the admin token is wrong")
