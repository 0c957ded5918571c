"""Children the supervisor starts and waits for itself, which the reaper must leave alone.

The supervisor is a child subreaper (:mod:`supervisor.workers.reaper`): it reaps zombie
children it did not start, orphans adopted from the sandbox. A child it did start, such as
the policy validator, is waited for by whoever started it; were the reaper to collect its
exit status first, that waiter would never learn the child ended (asyncio's child watcher
then waits forever). Such a child is registered here from the moment it is started until
it has been waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["is_owned", "owned"]

_OWNED: set[int] = set()


@contextlib.contextmanager
def owned(pid: int) -> Iterator[None]:
    """Keep the reaper off ``pid`` until the block ends (after the caller has waited for it)."""
    _OWNED.add(pid)
    try:
        yield
    finally:
        _OWNED.discard(pid)


def is_owned(pid: int) -> bool:
    return pid in _OWNED
