"""Emulator-only: one open BigQuery transaction at a time across processes.

bqemulator runs every session on one DuckDB connection, so two sessions with an open
transaction collide ("cannot start a transaction within a transaction"); real BigQuery isolates
sessions. Tests that run two recpipe runs at once on the emulator serialize only the
transactions (a file lock around ``BigQueryWarehouse.transaction``); everything else overlaps.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

LOCK_ENV = "RECPIPE_TEST_EMULATOR_TXN_LOCK"


def serialize_transactions() -> None:
    """Patch ``BigQueryWarehouse.transaction`` in this process to hold the file named by
    :data:`LOCK_ENV` (an exclusive flock, shared with every process that does the same) while a
    transaction is open."""
    from recpipe.warehouse import BigQueryWarehouse

    unlocked = BigQueryWarehouse.transaction

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with open(os.environ[LOCK_ENV], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with unlocked(self):
                    yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    BigQueryWarehouse.transaction = transaction


@contextlib.contextmanager
def transactions_one_at_a_time(lock_path: str) -> Iterator[None]:
    """:func:`serialize_transactions` in this process for the block, with :data:`LOCK_ENV` set
    for the children it starts (which call :func:`serialize_transactions` themselves)."""
    from recpipe.warehouse import BigQueryWarehouse

    unlocked = BigQueryWarehouse.transaction
    os.environ[LOCK_ENV] = lock_path
    serialize_transactions()
    try:
        yield
    finally:
        BigQueryWarehouse.transaction = unlocked
        del os.environ[LOCK_ENV]
