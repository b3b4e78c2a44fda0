"""``${NAME}`` and ``${NAME:-default}`` in a manifest's ``env`` values and
``allowed_outbound_hosts`` entries, from the environment of the process loading it.

One nimbus.toml then serves several setups: the example app's payment service runs on
``${PAYMENT_PORT:-8090}``, and ``make up PAYMENT_PORT=9001`` moves it without an edit.
Only a manifest read from a file is expanded (the operator's own shell, like Spin's
variables); a config sent to the admin API's deploy is taken literally, so a remote
deployer cannot read the server's environment into a function.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

#: ``${NAME}`` or ``${NAME:-default}``; the default may not contain ``}``
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every variable replaced; ``ValueError`` naming a variable that is
    neither set nor given a default, or a ``${`` that is not a variable."""
    env = os.environ if environ is None else environ

    def value(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        found = env.get(name)
        if found is not None and found != "":
            return found
        if default is None:
            raise ValueError(
                f"environment variable {name} is not set; set it, or give a default: "
                f"${{{name}:-value}}"
            )
        return default

    out = VARIABLE.sub(value, text)
    if "${" in VARIABLE.sub("", text):
        raise ValueError(
            f"{text!r}: '${{' starts no variable; write ${{NAME}} or ${{NAME:-default}}"
        )
    return out
