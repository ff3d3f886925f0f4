"""What a stage leaves behind in a process that runs several (``recpipe run``): its cyclic garbage
is collected, and what survives is frozen so that later collections skip it."""

from __future__ import annotations

import gc
import weakref

import pytest

from recpipe.airflow_tasks import release_freed_memory, stage
from recpipe.warehouse import WarehouseBusyError

RUN = {"as_of": "2026-10-01", "run_id": "memory", "k": 10, "retrain": "auto"}


class _Node:
    pass


def _cycle() -> weakref.ref:
    """A weak reference to an object only a reference cycle keeps alive."""
    node = _Node()
    node.itself = node
    return weakref.ref(node)


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_finished_stage_collects_its_cycles_then_freezes_the_survivors():
    with stage(RUN):
        garbage = _cycle()
    assert garbage() is None
    assert gc.get_freeze_count() > 0


def test_a_failed_stage_collects_but_freezes_nothing():
    garbage = _cycle()
    with pytest.raises(WarehouseBusyError), stage(RUN):
        raise WarehouseBusyError("warehouse.duckdb", "", 1.0)
    assert garbage() is None
    assert gc.get_freeze_count() == 0


def test_a_cycle_alive_at_the_freeze_is_not_collected_later():
    """The trade-off: what was alive at a freeze and turns into cyclic garbage afterwards stays
    (a stage's frames are garbage before its own freeze, so they are collected)."""
    node = _Node()
    node.itself = node
    kept = weakref.ref(node)
    release_freed_memory()
    del node
    release_freed_memory(freeze=False)
    assert kept() is not None
