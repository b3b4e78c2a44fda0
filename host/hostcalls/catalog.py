"""The bridge between guests and the platform: every host import, grant-checked.

Each module here declares the imports of one capability as ``HostFunction`` values;
``all_host_functions()`` is what the platform hands the runtime.
"""

from __future__ import annotations

from host.hostcalls import core, http, secrets, services
from host.runtime.imports import HostFunction


def all_host_functions() -> list[HostFunction]:
    return [*core.FUNCTIONS, *services.FUNCTIONS, *http.FUNCTIONS, *secrets.FUNCTIONS]
