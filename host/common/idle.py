"""How long a background poller waits for work: briefly while work comes, longer
while none does.

The deliverers, the outbox dispatcher and the workflow engine each wait for a commit
made in their own process (it wakes them at once) or for a timeout, after which they
look again: for what another process committed, and for what has come due (a retry's
backoff, a visibility timeout, a workflow timer). A fixed 20 ms timeout kept a host
with ten triggers waking 500 times a second with nothing to do, each wake taking the
GIL from the requests being served. An ``IdlePoll`` starts at ``FIRST_S`` and doubles
each time a wait ends with nothing found, up to ``LONGEST_S``; work found, or a local
commit, brings it back to ``FIRST_S``. So what is due, or what another process
committed, is seen within ``LONGEST_S`` when all is quiet and within ``FIRST_S``
while work flows.
"""

from __future__ import annotations

#: the wait while work comes
FIRST_S = 0.02
#: the longest wait of an idle poller
LONGEST_S = 0.1


class IdlePoll:
    """The next wait of one poller."""

    __slots__ = ("wait_s",)

    def __init__(self) -> None:
        self.wait_s = FIRST_S

    def found(self) -> None:
        """Work was found, or a commit here woke the poller: look again soon."""
        self.wait_s = FIRST_S

    def waited(self, woken: bool) -> None:
        """A wait ended, ``woken`` by a commit here (look again soon) or not (wait
        longer next time)."""
        self.wait_s = FIRST_S if woken else min(self.wait_s * 2, LONGEST_S)
