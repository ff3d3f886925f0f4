"""Test isolation: every test session gets its own Airflow home, every test its own warehouse.

Airflow reads its configuration on first import, so the environment is set here, at collection,
before any test module imports airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="recpipe-tests-"))
os.environ["RECPIPE_HOME"] = str(_SESSION_DIR / "home")
os.environ.pop("RECPIPE_WAREHOUSE", None)
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__COSMOS__CACHE_DIR"] = str(_SESSION_DIR / "cosmos")

from recpipe.airflow_runner import airflow_environment  # noqa: E402
from recpipe.settings import load_settings  # noqa: E402

for _key, _value in airflow_environment(load_settings()).items():
    os.environ.setdefault(_key, _value)

TINY_SHOP = {"users": 300, "items": 150, "days": 40, "seed": 11}


@pytest.fixture
def recpipe_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty RECPIPE_HOME (its own DuckDB warehouse) for one test."""
    home = tmp_path / "recpipe_home"
    monkeypatch.setenv("RECPIPE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_shop():
    """A tiny synthetic shop (a few thousand events), generated once per test session."""
    from recpipe.synthetic import generate_shop

    return generate_shop(_SESSION_DIR / "tiny_shop", show_progress=False, **TINY_SHOP)


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated once."""
    from recpipe.airflow_runner import configure_airflow

    configure_airflow(load_settings())


# `make test` runs the tests on pytest-xdist workers, a work unit at a time: a test file, or every
# file that uses one of these expensive session fixtures (a real Airflow with three DAG runs), so
# that it starts once. Checked at collection: a test that uses one must be listed here.
SHARED_FIXTURE_UNITS = {
    "airflow_services": (
        "tests/integration/test_airflow_services.py",
        "tests/integration/test_backfill.py",
        "tests/integration/test_plugin_browser.py",
    ),
}


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    for unit, files in SHARED_FIXTURE_UNITS.items():
        if path in files:
            return unit
    return path


def pytest_xdist_make_scheduler(config, log):
    """One work unit (:func:`work_unit`) per worker at a time, in collection order. (xdist's
    own ``--dist loadgroup`` does not group on pytest 9: it renames a node id pytest no longer
    reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnits(config, log)


def pytest_collection_modifyitems(config, items):
    """Slow work units first, shared-fixture ones (the longest) before the rest, so the fast tests
    fill the gaps at the end instead of a 10-minute test starting last; items of a unit keep
    their order (module fixtures are set up once)."""
    units: dict[str, tuple[bool, bool, int]] = {}
    for item in items:
        unit = work_unit(item.nodeid)
        for fixture in SHARED_FIXTURE_UNITS:
            if fixture in item.fixturenames and unit != fixture:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {fixture}: add its file to SHARED_FIXTURE_UNITS"
                )
        slow, shared, first = units.get(unit, (False, unit in SHARED_FIXTURE_UNITS, len(units)))
        units[unit] = (slow or item.get_closest_marker("slow") is not None, shared, first)
    position = {id(item): index for index, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple:
        slow, shared, first = units[work_unit(item.nodeid)]
        return (not slow, not shared, first, position[id(item)])

    items.sort(key=key)
