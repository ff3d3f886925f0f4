"""Faults: a crash between staging and publish, a SIGKILL mid-publish, a second writer holding
the DuckDB file, a missing or corrupt model artifact. Nothing published is lost or half-written,
and a rerun gives the rows of a clean run.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime

import duckdb
import pytest

from recpipe import pipeline
from recpipe.gates import GateFailed
from recpipe.warehouse import DuckDBWarehouse, WarehouseBusyError, session

from .conftest import digest, make_run, published

pytestmark = pytest.mark.slow


def unpublish(settings, run_date) -> None:
    """Remove ``run_date`` from the copy, as if it had never been published (latest = D-1)."""
    with session(settings) as wh:
        wh.execute("delete from recpipe.recommendations where run_date = @d", {"d": run_date})


def serving_version(settings, run_date) -> str:
    with session(settings) as wh:
        return wh.query_df(
            "select model_version from recpipe.pipeline_runs where run_date = @d "
            "and status = 'success' limit 1",
            {"d": run_date},
        )["model_version"].iloc[0]


def finish(settings, run) -> None:
    """The stages after training, as a retry of the failed tasks runs them."""
    pipeline.score_candidates(run, serving_version(settings, run.as_of_date), settings)
    pipeline.check_output(run, settings)
    pipeline.publish_recommendations(run, settings)


class Injected(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["before_publish", "inside_publish"])
def test_a_crash_after_staging_leaves_the_previous_publish_and_a_retry_matches_a_clean_run(
    shop, prepared_shop, monkeypatch, where
):
    d = prepared_shop.as_of
    if where == "before_publish":  # D's first publish: the latest stays D-1
        unpublish(shop, d)
    # inside_publish: a republish of D, whose old rows the failed swap has already deleted
    before, latest = published(shop), published(shop, view="recommendations_latest")
    run = make_run(d, f"crash-{where}")
    pipeline.start_run(run, shop)
    pipeline.score_candidates(run, serving_version(shop, prepared_shop.previous), shop)

    if where == "before_publish":  # e.g. the output gate's task dies after the staging write

        def output_checks(*args):
            raise Injected("the task died after the staging write")

        monkeypatch.setattr(pipeline, "output_checks", output_checks)
        failing = pipeline.check_output
    else:  # the swap itself dies after deleting D's old rows, before inserting the new ones
        original = DuckDBWarehouse.execute

        def execute(self, sql, params=None):
            if sql.startswith("insert into recpipe.recommendations"):
                raise Injected("disk full")
            return original(self, sql, params)

        monkeypatch.setattr(DuckDBWarehouse, "execute", execute)
        failing = pipeline.publish_recommendations
    with pytest.raises(Injected):
        failing(run, shop)
    monkeypatch.undo()

    assert digest(published(shop)) == digest(before)  # nothing lost, nothing half-written
    assert digest(published(shop, view="recommendations_latest")) == digest(latest)
    pipeline.check_output(run, shop)  # the retry: the staged rows are still there
    pipeline.publish_recommendations(run, shop)
    assert digest(published(shop, d)) == prepared_shop.digests[d]


def test_readers_see_the_old_rows_until_the_swap_commits(shop, prepared_shop, monkeypatch):
    d = prepared_shop.as_of
    old = published(shop, view="recommendations_latest")
    run = make_run(d, "reader", k=5)  # different rows from the published k=10 ones
    pipeline.start_run(run, shop)
    pipeline.score_candidates(run, serving_version(shop, d), shop)
    seen = []
    original = DuckDBWarehouse.execute

    def execute(self, sql, params=None):
        original(self, sql, params)
        if sql.startswith(("delete from recpipe.recommendations", "insert into recpipe.rec")):
            # Another connection to the same database reads mid-transaction.
            reader = duckdb.connect(str(shop.duckdb_path))
            seen.append(
                reader.execute(
                    "select * from recpipe.recommendations_latest order by user_id, rank"
                ).df()
            )
            reader.close()

    monkeypatch.setattr(DuckDBWarehouse, "execute", execute)
    pipeline.check_output(run, shop)
    pipeline.publish_recommendations(run, shop)
    monkeypatch.undo()
    assert len(seen) == 2 and all(digest(frame) == digest(old) for frame in seen)
    new = published(shop, view="recommendations_latest")
    assert new["rank"].max() == 5 and new["user_id"].nunique() == old["user_id"].nunique()


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    from pathlib import Path
    from recpipe import pipeline
    from recpipe.settings import load_settings
    from recpipe.warehouse import DuckDBWarehouse

    marker = Path(sys.argv[1])
    original = DuckDBWarehouse.execute

    def execute(self, sql, params=None):
        original(self, sql, params)
        if sql.startswith("delete from recpipe.recommendations"):
            marker.write_text("mid-swap")
            time.sleep(600)  # killed here, inside the publish transaction

    DuckDBWarehouse.execute = execute
    settings = load_settings()
    run = pipeline.Run(as_of=sys.argv[2], run_id="killed", k=10, retrain="auto")
    pipeline.start_run(run, settings)
    pipeline.score_candidates(run, sys.argv[3], settings)
    pipeline.check_output(run, settings)
    pipeline.publish_recommendations(run, settings)
    """
)


def test_sigkill_mid_publish_loses_nothing_and_a_rerun_matches_a_clean_run(
    shop, prepared_shop, tmp_path
):
    d = prepared_shop.as_of
    before = published(shop)
    marker = tmp_path / "marker"
    version = serving_version(shop, d)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(marker), d.isoformat(), version],
        env={**os.environ, "RECPIPE_HOME": str(shop.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached the publish step"
            time.sleep(0.1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    # The file opens (DuckDB replays or drops the uncommitted WAL), D's rows are the old ones.
    assert digest(published(shop)) == digest(before)
    with session(shop) as wh:
        killed = wh.query_df("select status from recpipe.pipeline_runs where run_id = 'killed'")
    assert killed["status"].tolist() == ["running"]  # no process was left to close it
    run = make_run(d, "after-kill")
    pipeline.start_run(run, shop)  # closes the killed run of the same date
    finish(shop, run)
    with session(shop) as wh:
        killed = wh.query_df(
            "select status, error from recpipe.pipeline_runs where run_id = 'killed'"
        ).iloc[0]
    assert killed["status"] == "failed" and "abandoned" in killed["error"]
    assert digest(published(shop, d)) == prepared_shop.digests[d]
    assert (
        digest(published(shop, prepared_shop.previous))
        == (prepared_shop.digests[prepared_shop.previous])
    )


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("create table if not exists recpipe.lock_holder as select 1 as x")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def hold_lock(path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_writer_makes_us_wait_then_fail_clearly_without_corruption(shop, caplog):
    caplog.set_level(logging.DEBUG, logger="recpipe.warehouse")  # a 2 s wait logs at debug
    before = published(shop)
    holder = hold_lock(shop.duckdb_path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(
            WarehouseBusyError,
            match=rf"warehouse {shop.duckdb_path} is locked by another process "
            rf"\(PID {holder.pid}, .*\) for more than 2s \(RECPIPE_LOCK_TIMEOUT_S\)",
        ):
            DuckDBWarehouse(str(shop.duckdb_path), lock_timeout_s=2)
        assert 2 <= time.monotonic() - started < 4
        assert "waiting for the lock" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    # A holder that lets go within the timeout: we wait, then work normally.
    holder = hold_lock(shop.duckdb_path, 2)
    try:
        warehouse = DuckDBWarehouse(str(shop.duckdb_path), lock_timeout_s=60)
        warehouse.close()
    finally:
        holder.wait()
    assert digest(published(shop)) == digest(before)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_unusable_champion_artifact(shop, prepared_shop, damage):
    """retrain=never fails clearly; retrain=auto trains a replacement and the run publishes
    the same rows as before (LightGBM is deterministic, so the new model is the same one)."""
    d = prepared_shop.as_of
    version = serving_version(shop, d)
    users_before = published(shop, d)["user_id"].nunique()
    artifact = shop.models_dir / f"{version}.txt"
    if damage == "missing":
        artifact.unlink()
    else:
        text = artifact.read_text()
        artifact.write_text(text[: len(text) // 2])  # a half-written file
    strict = make_run(d, f"never-{damage}", retrain="never")
    pipeline.start_run(strict, shop)
    with pytest.raises(GateFailed, match=rf"no usable champion.*{version}.*{damage}"):
        pipeline.train_or_load_ranker(strict, shop)

    run = make_run(d, f"auto-{damage}")
    pipeline.start_run(run, shop)
    served = pipeline.train_or_load_ranker(run, shop)
    pipeline.check_model(run, served, shop)
    pipeline.score_candidates(run, served, shop)
    pipeline.check_output(run, shop)
    pipeline.publish_recommendations(run, shop)
    frame = published(shop, d)
    assert served != version and (frame["model_version"] == served).all()
    assert frame["user_id"].nunique() == users_before
    assert (
        digest(published(shop, prepared_shop.previous))
        == (prepared_shop.digests[prepared_shop.previous])
    )


def test_a_held_lock_fails_recpipe_run_within_one_timeout_with_one_line(airflow_db, tmp_path):
    """Issue 13.6: with the warehouse file held by another process, `recpipe run` waits one
    lock timeout (the first task), the failure recorder, the alert and the CLI's lookup do not
    wait it again, and stderr has one line naming the locked file and its holder."""
    timeout = 30
    home = tmp_path / "home"
    home.mkdir()
    warehouse = home / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).execute("create schema recpipe").close()
    holder = hold_lock(warehouse, 900)
    env = {**os.environ, "RECPIPE_HOME": str(home), "RECPIPE_LOCK_TIMEOUT_S": str(timeout)}
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "recpipe.cli", "run", "--as-of", "2026-09-30"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines, reported = [], None
        for line in run.stderr:  # the terminal's lines, and when the error reached it
            if line.strip():
                lines.append(line.rstrip("\n"))
                reported = reported or time.time()
        assert run.wait(timeout=900) == 1
    finally:
        holder.kill()
        holder.wait()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        rf"recpipe run: error: recpipe_daily for 2026-09-30 ended failed: warehouse "
        rf"{re.escape(str(warehouse))} is locked by another process \(PID {holder.pid}, .*\) "
        rf"for more than {timeout}s \(RECPIPE_LOCK_TIMEOUT_S\).*",
        lines[0],
    ), lines[0]
    log = (home / "logs" / "recpipe_daily_2026-09-30.log").read_text()
    waits = [line for line in log.splitlines() if "waiting for the lock" in line]
    assert len(waits) == 1, waits  # only the first task waited
    first_wait = datetime.fromisoformat(waits[0].split()[0].replace("Z", "+00:00"))
    # one timeout plus Airflow closing the run (~10 s measured); three waits were >= 3 timeouts
    assert reported - first_wait.timestamp() < 2 * timeout


def test_with_the_lock_held_the_failure_recorder_and_the_first_task_do_not_wait_twice(
    tmp_path, monkeypatch
):
    """The first task gives up after one timeout without retrying (AirflowFailException); the
    failure recorder checks for a few seconds only and still fails the run with the reason."""
    from dataclasses import asdict

    from airflow.sdk.exceptions import AirflowFailException

    from recpipe.airflow_tasks import begin, fail_run
    from recpipe.warehouse import BRIEF_LOCK_TIMEOUT_S

    home = tmp_path / "home"
    home.mkdir()
    warehouse = home / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).execute("create schema recpipe").close()
    monkeypatch.setenv("RECPIPE_HOME", str(home))
    monkeypatch.setenv("RECPIPE_LOCK_TIMEOUT_S", "60")
    holder = hold_lock(warehouse, 300)
    try:
        started = time.monotonic()
        with pytest.raises(
            AirflowFailException,
            match=rf"recpipe run for 2026-09-30 failed: not "
            rf"recorded in pipeline_runs: warehouse {re.escape(str(warehouse))} "
            r"is locked by another process",
        ):
            fail_run(asdict(make_run(datetime(2026, 9, 30).date(), "held")))
        assert BRIEF_LOCK_TIMEOUT_S <= time.monotonic() - started < 30

        monkeypatch.setenv("RECPIPE_LOCK_TIMEOUT_S", "3")
        started = time.monotonic()
        with pytest.raises(AirflowFailException, match="is locked by another process"):
            begin({"as_of": "2026-09-30"}, None, None, "held")
        assert 3 <= time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
