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
