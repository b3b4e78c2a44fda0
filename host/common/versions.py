"""An installed distribution's version, read from the name of its ``.dist-info``
folder beside the package: ``importlib.metadata`` would import itself and scan all of
``sys.path`` (~15-20 ms), paid by a server's start (the engine's fingerprint) and by
its first Python function (the shared runtime's key)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def installed_version(package: str, distribution: str) -> str:
    """The version of ``distribution``, which installs the top-level ``package``;
    ``importlib.metadata.PackageNotFoundError`` when it is not installed."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    if locations:
        site = Path(next(iter(locations))).parent
        prefix = f"{distribution.replace('-', '_')}-"
        for info in site.glob(f"{prefix}*.dist-info"):
            return info.name.removeprefix(prefix).removesuffix(".dist-info")
    from importlib.metadata import version

    return version(distribution)
