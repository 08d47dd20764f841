"""SQLite stores in a forked child (a pre-forking server such as ``gunicorn --preload``).

SQLite must never use a connection opened before a ``fork()`` in the child
(https://www.sqlite.org/howtocorrupt.html, 2.6): both processes would drive one connection's
locks and WAL state. The forking thread's connection is inherited through its
``threading.local``, so without this a child's first read or write went through its parent's
connection (found by the attack14 review of issue 14's fork hooks).

`track` registers a store; in the child every tracked store forgets its connections — without
closing them (closing may checkpoint or remove the WAL the parent still uses; the objects are
kept so garbage collection does not close them either) — and gets a new lock. Each thread of the
child then opens its own connection, as on a fresh store. A shared in-memory database is the
child's own copy of memory and stays in use.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
# Connections inherited from the parent: never used, never closed (see module docstring).
_ABANDONED: list[Any] = []


def track(store: SQLiteStore) -> None:
    """Start ``store`` afresh in any child forked from now on."""
    _STORES.add(store)


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        if store._shared is not None:
            continue  # an in-memory database: the child's own copy
        _ABANDONED.extend(conn for conn, _thread in store._conns)
        store._conns = []
        store._local = threading.local()
        store._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
