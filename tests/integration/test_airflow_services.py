"""Real Airflow services: api-server, scheduler and dag-processor on 127.0.0.1, operated only
through the REST API v2 (see conftest.py for the scenario: a manual run with params, then an
Airflow backfill over two dates)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from recpipe.warehouse import session

from .conftest import as_dates

pytestmark = pytest.mark.slow


def test_dag_params_show_types_bounds_and_descriptions(airflow_services):
    running, _ = airflow_services
    params = running.client().get("/api/v2/dags/recpipe_daily/details")["params"]
    k = params["k"]["schema"]
    assert (k["type"], k["minimum"], k["maximum"]) == ("integer", 1, 200)
    assert params["k"]["value"] == 20 and params["k"]["description"]
    assert params["retrain"]["schema"]["enum"] == ["auto", "always", "never"]
    assert params["as_of"]["schema"]["format"] == "date" and params["as_of"]["description"]


def test_only_127_0_0_1_listens(airflow_services):
    import psutil

    running, _ = airflow_services
    pids = {pid for proc in running.processes.values() for pid in _tree(proc.pid)}
    listening = [
        c.laddr for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.pid in pids
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


def _tree(pid: int) -> list[int]:
    import psutil

    return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]


def test_manual_run_with_params_publishes_its_as_of_date(airflow_scenario):
    run = airflow_scenario.manual_run
    assert run["state"] == "success", run
    assert run["run_type"] == "manual" and run["logical_date"] is None
    assert run["conf"] == {"as_of": airflow_scenario.manual_as_of.isoformat(), "k": 10}
    with session(airflow_scenario.settings) as wh:
        record = wh.query_df(
            "select * from recpipe.pipeline_runs where run_id = @r", {"r": run["dag_run_id"]}
        )
    assert len(record) == 1
    assert record["status"].iloc[0] == "success"
    assert pd.Timestamp(record["run_date"].iloc[0]).date() == airflow_scenario.manual_as_of
    rows = airflow_scenario.manual_rows
    assert record["rows"].iloc[0] == len(rows) > 0
    assert rows.groupby("user_id").size().max() == 10  # the k param reached the pipeline


def test_backfill_publishes_every_date_of_its_range(airflow_scenario):
    runs = airflow_scenario.backfill_runs
    assert [r["state"] for r in runs] == ["success"] * len(airflow_scenario.backfill_dates), runs
    logical = sorted(date.fromisoformat(r["logical_date"][:10]) for r in runs)
    assert logical == airflow_scenario.backfill_dates
    assert airflow_scenario.backfill["max_active_runs"] == 1
    with session(airflow_scenario.settings) as wh:
        partitions = wh.query_df(
            "select run_date, count(*) as n, max(rank) as max_rank, count(distinct user_id) as u"
            " from recpipe.recommendations group by run_date order by run_date"
        )
        records = wh.query_df(
            "select run_id, run_date, status, rows from recpipe.pipeline_runs order by run_date"
        )
    assert as_dates(partitions["run_date"]) == airflow_scenario.backfill_dates
    assert (partitions["max_rank"] == 10).all() and (partitions["u"] > 0).all()
    by_id = records.set_index("run_id")
    for run in runs:
        record = by_id.loc[run["dag_run_id"]]
        assert record["status"] == "success"
        day = date.fromisoformat(run["logical_date"][:10])
        assert pd.Timestamp(record["run_date"]).date() == day
        published = partitions.set_index("run_date").loc[record["run_date"], "n"]
        assert record["rows"] == published


def test_runs_did_not_overlap(airflow_scenario):
    """DuckDB has one writer and every run rebuilds the dbt tables: runs must be serial."""
    runs = sorted(
        [airflow_scenario.manual_run, *airflow_scenario.backfill_runs],
        key=lambda r: r["start_date"],
    )
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert earlier["end_date"] <= later["start_date"], (earlier, later)


def test_recpipe_page_requires_airflow_auth(airflow_services):
    """Anonymous and forged callers get no page; a logged-in REST token does."""
    import requests

    running, _ = airflow_services
    url = f"{running.url}/recpipe/"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(f"{running.url}/recpipe/health", timeout=30).status_code == 401
    forged = requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=30)
    assert forged.status_code == 403 and "user_id" not in forged.text
    client = running.client()
    client._login()
    reply = requests.get(url, headers={"Authorization": f"Bearer {client._token}"}, timeout=60)
    assert reply.status_code == 200 and "<h1>recpipe" in reply.text


def test_the_api_waits_out_a_metadata_db_lock_held_longer_than_sqlites_default(airflow_services):
    """SQLite gives up on a lock after 5 s by default, and the api-server then answers 500 (or
    503 for a backfill); recpipe's Airflow waits up to a minute (recpipe.airflow_db)."""
    import sqlite3
    import threading
    import time

    running, _ = airflow_services
    held = threading.Event()

    def hold_the_write_lock(seconds: float = 8.0) -> None:
        con = sqlite3.connect(running.home / "airflow.db", timeout=60, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert held.wait(60)
    client = running.client()
    client._login()  # before the clock starts: the login writes nothing, but keep it apart
    started = time.monotonic()
    client.ensure_pool(slots=2)  # the pool exists: a PATCH, a write that must wait for the lock
    waited = time.monotonic() - started
    holder.join()
    assert client.busy_replies == 0
    assert waited > 5, f"the write did not wait for the lock ({waited:.1f}s)"
    assert client.get("/api/v2/pools/recpipe_warehouse")["slots"] == 2
    client.ensure_pool()  # back to the one slot the DuckDB file needs
    assert client.get("/api/v2/pools/recpipe_warehouse")["slots"] == 1
