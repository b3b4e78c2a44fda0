"""What one function may reach: the grants of its manifest, and the questions asked of them.

Capabilities are granted, never ambient: a function with no grants reaches no table,
bucket, queue or topic. The hostcalls ask ``Grants.allows`` before every service call;
the manifest builds ``Grants`` (``host.manifest``), and this module holds the names and
patterns both sides agree on.

Modes: ``"read"`` (get, list; receive for a queue) or ``"read-write"`` (also put,
delete; send to a queue; publish to a topic). Topic grants are patterns of
dot-separated segments: ``*`` matches exactly one segment, ``#`` (last segment only)
matches the rest, zero or more segments: ``order.*`` grants ``order.created`` but not
``order`` or ``order.created.eu``; ``order.#`` grants all three.
"""

from __future__ import annotations

import re

from msgspec import Struct, field

#: the kinds of service a function can be granted, as written in ``[functions.X.grants]``
KINDS = ("tables", "buckets", "queues", "topics")
MODES = ("read", "read-write")
#: a table, bucket or queue name (the same rule as the services: host/services/keys.py)
RESOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: a topic or topic pattern: dot-separated segments, each a word, ``*`` or ``#``
TOPIC = re.compile(r"^([A-Za-z0-9_-]+|\*|#)(\.([A-Za-z0-9_-]+|\*|#))*$")


def is_topic_pattern(pattern: str) -> bool:
    """A valid topic pattern: ``TOPIC`` segments with ``#`` only as the last one."""
    return bool(TOPIC.match(pattern)) and "#" not in pattern.split(".")[:-1]


def topic_matches(pattern: str, topic: str) -> bool:
    """``*`` matches one dot-separated segment, ``#`` the rest (zero or more)."""
    pat, parts = pattern.split("."), topic.split(".")
    for i, p in enumerate(pat):
        if p == "#":
            return True
        if i >= len(parts) or (p != "*" and p != parts[i]):
            return False
    return len(parts) == len(pat)


class Grants(Struct, frozen=True):
    """What one function may reach, by kind: ``{name or topic pattern: mode}``."""

    tables: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)

    def allows(self, kind: str, name: str, write: bool) -> bool:
        """May this function read (or, with ``write``, write) the ``kind`` named ``name``?

        ``kind`` is one of ``KINDS``; for ``"topics"``, ``name`` is a concrete topic and
        every granted pattern that matches it counts.
        """
        if kind == "tables":
            granted = self.tables
        elif kind == "buckets":
            granted = self.buckets
        elif kind == "queues":
            granted = self.queues
        elif kind == "topics":
            return any(
                (m == "read-write" or not write)
                for p, m in self.topics.items()
                if topic_matches(p, name)
            )
        else:
            raise ValueError(f"unknown grant kind {kind!r}; expected one of {', '.join(KINDS)}")
        mode = granted.get(name)
        return mode is not None and (mode == "read-write" or not write)

    def may_read(self, kind: str, name: str) -> bool:
        return self.allows(kind, name, write=False)

    def may_write(self, kind: str, name: str) -> bool:
        return self.allows(kind, name, write=True)

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The grants in manifest form, empty kinds left out."""
        out = {"tables": self.tables, "buckets": self.buckets, "queues": self.queues}
        out["topics"] = self.topics
        return {k: dict(v) for k, v in out.items() if v}
