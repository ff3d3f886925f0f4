"""One real local Airflow (api-server, scheduler, dag-processor) shared by the service, backfill
and browser tests: started once, operated once through the REST API v2, stopped by PID.

The scenario, on a tiny shop whose last day of events is L (D = L - 1):
1. a manual run (no logical date) with params ``as_of = D``, ``k = 10``;
2. an Airflow backfill over D .. L + 1, newest first (``run_backwards``) and with
   ``retrain = always``, so D is run again after later dates trained newer models.
Each DAG run costs one to two minutes on a 2-core machine, so the tests share these four.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import pandas as pd
import pytest

from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import Settings, load_settings
from recpipe.warehouse import session

RUN_TIMEOUT_S = 900


def digest(frame: pd.DataFrame) -> str:
    """A hash of a frame's rows, in order."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()


def as_dates(column: pd.Series) -> list[date]:
    """A DATE column as ``datetime.date`` values (DuckDB returns them as pandas Timestamps)."""
    return [stamp.date() for stamp in pd.to_datetime(column)]


def published(settings: Settings, run_date: date) -> pd.DataFrame:
    with session(settings) as wh:
        return wh.query_df(
            "select * from recpipe.recommendations where run_date = @d order by user_id, rank",
            {"d": run_date},
        )


@dataclass
class Scenario:
    services: object
    settings: Settings
    manual_as_of: date
    backfill_dates: list[date]
    manual_run: dict = field(default_factory=dict)
    backfill: dict = field(default_factory=dict)
    backfill_runs: list[dict] = field(default_factory=list)
    manual_rows: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def airflow_services(tmp_path_factory, tiny_shop):
    """The three Airflow services on free 127.0.0.1 ports, a temporary AIRFLOW_HOME, the tiny
    shop ingested into their warehouse; scheduled runs off (the tests trigger their own)."""
    from recpipe import services

    home = tmp_path_factory.mktemp("airflow_services")
    settings = replace(load_settings(), home=home / "recpipe_home", warehouse="duckdb")
    with session(settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    started = time.monotonic()
    running = services.start(
        settings,
        home=home / "airflow",
        scheduled_runs=False,
        # The DAG file does not change during the tests: parse it once, not every 30 s (each
        # parse costs seconds of CPU that the other tests of the session need).
        # On a busy 2-core machine the parse (cosmos reads the dbt manifest) can exceed the
        # processor's default 50 s limit, and with this interval it would never be retried.
        # The scheduler's idle sleep (1 s by default) is paid once per task of a serial DAG
        # (a one-slot pool on DuckDB): 0.1 s took a tiny-shop run from 158 s to 132 s.
        extra_env={
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
        },
        timeout_s=600,
    )
    running.start_seconds = time.monotonic() - started
    try:
        yield running, settings
    finally:
        running.stop()
        for name, proc in running.processes.items():
            assert proc.poll() is not None, f"airflow {name} (pid {proc.pid}) still running"


@pytest.fixture(scope="session")
def airflow_scenario(airflow_services, tiny_shop) -> Scenario:
    running, settings = airflow_services
    last = tiny_shop.end_date
    scenario = Scenario(
        services=running,
        settings=settings,
        manual_as_of=last - timedelta(days=1),
        # D (the manual run's date) again and one later date, newest first: enough to show a
        # backfilled date reproduces its first run after a later date trained a newer model
        backfill_dates=[last - timedelta(days=1), last],
    )
    scenario.seconds["start_services"] = running.start_seconds
    client = running.client()
    client.unpause()

    started = time.monotonic()
    run_id = client.trigger({"as_of": scenario.manual_as_of.isoformat(), "k": 10})
    (scenario.manual_run,) = client.wait_for_runs({run_id}, timeout_s=RUN_TIMEOUT_S)
    scenario.seconds["manual_run"] = time.monotonic() - started
    # No run is active now, so this process may open the DuckDB file.
    scenario.manual_rows = published(settings, scenario.manual_as_of)

    started = time.monotonic()
    scenario.backfill = client.backfill(
        scenario.backfill_dates[0].isoformat(),
        scenario.backfill_dates[-1].isoformat(),
        conf={"k": 10, "retrain": "always"},
        run_backwards=True,
    )
    # Airflow creates every run of a backfill (queued) when the backfill is created.
    backfill_ids = {r["dag_run_id"] for r in client.dag_runs() if r["run_type"] == "backfill"}
    assert len(backfill_ids) == len(scenario.backfill_dates), backfill_ids
    scenario.backfill_runs = client.wait_for_runs(
        backfill_ids, timeout_s=RUN_TIMEOUT_S * len(scenario.backfill_dates)
    )
    scenario.seconds[f"backfill_{len(scenario.backfill_dates)}_dates"] = time.monotonic() - started
    print(f"\nAirflow service scenario timings (s): {scenario.seconds}")
    return scenario
