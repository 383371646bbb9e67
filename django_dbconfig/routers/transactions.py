"""Which aliases have an open atomic block in which thread, readable by the router for nothing.

Asking Django (`connections[alias].in_atomic_block`) costs a thread-local lookup per
read, several times the router's own cost. Instead, each connection's list of open
atomic blocks (`connection.atomic_blocks`, which `transaction.atomic()` appends to and
pops from) is replaced by a list that records, in `OPEN`, the aliases with an open
block per thread. With no block open anywhere, `OPEN` is empty: the router's check is
one test of a dict's truth.

Blocks opened by Django's TestCase around each test are not counted: inside a test,
routing is what it is in production.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, SupportsIndex

from django.db import connections

logger = logging.getLogger(__name__)

__all__ = ["OPEN", "in_transaction", "on_connection_created", "track_open_connections"]

# Thread ident -> the aliases with an open atomic block in that thread. Replaced per
# thread on change (never mutated in place), so readers need no lock.
OPEN: dict[int, frozenset[str]] = {}
_lock = threading.Lock()


def in_transaction(alias: str) -> bool:
    """Whether this thread has an atomic block open on `alias`."""
    return alias in OPEN.get(threading.get_ident(), ())


def _opened(thread: int, alias: str) -> None:
    with _lock:
        OPEN[thread] = OPEN.get(thread, frozenset()) | {alias}


def _closed(thread: int, alias: str) -> None:
    with _lock:
        left = OPEN.get(thread, frozenset()) - {alias}
        if left:
            OPEN[thread] = left
        else:
            OPEN.pop(thread, None)


class _AtomicBlocks(list[Any]):
    """`connection.atomic_blocks` that reports when its first counted block opens and its last closes."""

    def __init__(self, alias: str, blocks: list[Any]) -> None:
        super().__init__(blocks)
        self.alias = alias
        self.thread: int | None = None  # the thread whose block is open, while one is
        self.counted = sum(1 for block in blocks if _counts(block))
        if self.counted:  # a connection tracked from inside its block (track_open_connections)
            self.thread = threading.get_ident()
            _opened(self.thread, alias)

    def append(self, block: Any) -> None:
        super().append(block)
        if _counts(block):
            self.counted += 1
            if self.counted == 1:
                self.thread = threading.get_ident()
                _opened(self.thread, self.alias)

    def pop(self, index: SupportsIndex = -1) -> Any:
        block = super().pop(index)
        if _counts(block):
            self.counted -= 1
            if self.counted == 0 and self.thread is not None:
                _closed(self.thread, self.alias)
                self.thread = None
        return block


def _counts(block: Any) -> bool:
    return not getattr(block, "_from_testcase", False)


def _track(connection: Any) -> None:
    blocks = connection.atomic_blocks
    # Django gives a connection a fresh list each time it connects: track each one.
    if not isinstance(blocks, _AtomicBlocks):
        connection.atomic_blocks = _AtomicBlocks(connection.alias, blocks)


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _track(connection)


def track_open_connections() -> None:
    """Track the connections this thread opened before the router existed."""
    for connection in connections.all(initialized_only=True):
        _track(connection)
