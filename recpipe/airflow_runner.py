"""Run ``recpipe_daily`` through real Airflow, in this process (``dag.test``).

Used by ``recpipe run``/``backfill``/``demo`` and the end-to-end tests. Airflow reads its
configuration when first imported, so :func:`configure_airflow` must run before any airflow
import; a local Airflow home (SQLite metadata DB) lives under ``$RECPIPE_HOME/airflow``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from recpipe.dag_definition import DAG_ID, WAREHOUSE_POOL
from recpipe.settings import DAGS_DIR, PLUGINS_DIR, Settings

log = logging.getLogger(__name__)


@dataclass
class DagRunOutcome:
    as_of: date
    run_id: str
    state: str
    task_seconds: dict[str, float] = field(default_factory=dict)
    failed_tasks: list[str] = field(default_factory=list)
    # Tasks that ran (ended success or failed; skipped ones did not): empty when no stage ran.
    tasks_run: list[str] = field(default_factory=list)
    dag_start: date | None = None

    @property
    def ok(self) -> bool:
        return self.state == "success"


class NotPublishedError(RuntimeError):
    """Airflow reported the DAG run a success, but recpipe did not publish that date."""


@dataclass(frozen=True)
class PublishedRun:
    """What ``recpipe.pipeline_runs`` recorded for a run that published."""

    run_id: str
    run_date: date
    users: int
    rows: int
    model_version: str


def check_published(settings: Settings, outcome: DagRunOutcome) -> PublishedRun:
    """The run of ``outcome`` as ``recpipe.pipeline_runs`` recorded it, if it published.

    Airflow's "success" is not enough: a DAG run with no task instance (a logical date before
    the DAG's ``start_date``) is marked success although no stage ran. Raises
    :class:`NotPublishedError` with a one-line reason unless a task ran and ``pipeline_runs``
    holds this run id with ``status = 'success'``, ``run_date`` equal to the as-of date and
    ``rows > 0``.
    """
    from recpipe.warehouse import session

    as_of, run_id = outcome.as_of, outcome.run_id
    if not outcome.tasks_run:
        why = (
            f"the date is before the DAG's start_date {outcome.dag_start}"
            if outcome.dag_start is not None and as_of < outcome.dag_start
            else "the DAG run has no task instance"
        )
        raise NotPublishedError(
            f"recpipe_daily for {as_of}: Airflow marked run {run_id} {outcome.state} but no "
            f"stage ran ({why}); nothing was published"
        )
    with session(settings) as wh:
        rows = wh.query_df(
            "select run_date, status, users, rows, model_version, error "
            f"from {wh.table('recpipe', 'pipeline_runs')} where run_id = @r",
            {"r": run_id},
        )
    if rows.empty:
        raise NotPublishedError(
            f"recpipe_daily for {as_of}: run {run_id} is not in recpipe.pipeline_runs; "
            "nothing was published"
        )
    row = rows.iloc[0]
    run_date = _as_date(row["run_date"])
    if run_date != as_of:
        raise NotPublishedError(
            f"recpipe_daily for {as_of}: run {run_id} ran for {run_date}, not {as_of}"
        )
    if row["status"] != "success":
        error = f": {row['error']}" if isinstance(row["error"], str) and row["error"] else ""
        raise NotPublishedError(
            f"recpipe_daily for {as_of}: pipeline_runs says {row['status']}{error}"
        )
    published = 0 if _missing(row["rows"]) else int(row["rows"])
    if published <= 0:
        raise NotPublishedError(
            f"recpipe_daily for {as_of}: run {run_id} succeeded but published no rows"
        )
    return PublishedRun(
        run_id=run_id,
        run_date=run_date,
        users=0 if _missing(row["users"]) else int(row["users"]),
        rows=published,
        model_version=str(row["model_version"]),
    )


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    import pandas as pd

    return pd.Timestamp(value).date()


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment a local Airflow for recpipe needs (existing values win)."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        # SQLite (the local default) waits a minute for a lock, not 5 s: see recpipe.airflow_db
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "recpipe.airflow_db.CONNECT_ARGS",
        # cosmos' watcher producer otherwise rewrites its whole XCom backup (every node's status
        # and compiled SQL, compressed) into an Airflow Variable on every push: quadratic in the
        # nodes, ~4 s of a 100k run. Off, the backup is written once if the build fails, which is
        # what a retry of the producer restores from; a producer killed outright leaves none and
        # the sensors then rebuild their own nodes (cosmos' fallback).
        "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(settings.home / "cosmos"),
        "DO_NOT_TRACK": "1",
        "RECPIPE_HOME": str(settings.home),
        "RECPIPE_WAREHOUSE": settings.warehouse,
    }


def configure_airflow(settings: Settings) -> None:
    """Set Airflow's environment and create its metadata database when missing."""
    for key, value in airflow_environment(settings).items():
        os.environ.setdefault(key, value)
    home = os.environ["AIRFLOW_HOME"]
    os.makedirs(home, exist_ok=True)
    marker = os.path.join(home, ".recpipe_db_migrated")
    if not os.path.exists(marker):
        migrate_metadata_db(os.environ.copy())
        open(marker, "w").close()
    if settings.single_writer:
        _ensure_pool()


def migrate_metadata_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` for the Airflow that ``env`` configures (its AIRFLOW_HOME and
    metadata DB), in a child process; RuntimeError with its last lines when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError("airflow db migrate failed: " + " | ".join(tail))


def _ensure_pool() -> None:
    """The one-slot pool every task of the DAG runs in on DuckDB (see :func:`dag_concurrency`)."""
    from airflow.models.pool import Pool

    if Pool.get_pool(WAREHOUSE_POOL) is None:
        Pool.create_or_update_pool(
            name=WAREHOUSE_POOL,
            slots=1,
            description="recpipe: one task at a time touches the DuckDB file (single writer)",
            include_deferred=False,
        )


def load_dag():
    """The ``recpipe_daily`` DAG, parsed from the dags folder, with import errors surfaced.
    Builds the dbt manifest first when it is missing or stale (the DAG file never does)."""
    from airflow.dag_processing.dagbag import DagBag

    from recpipe.dbt_manifest import ensure_manifest
    from recpipe.settings import load_settings

    ensure_manifest(load_settings().dbt_manifest)

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        first = next(iter(bag.import_errors.values())).strip().splitlines()[-1]
        raise RuntimeError(f"the DAG folder has import errors: {first}")
    return bag.get_dag(DAG_ID)


class StageProgress:
    """An Airflow listener that reports each stage of a run as it starts and ends, one line
    each: elapsed seconds, and for gates their verdict read from ``recpipe.dq_results``. The
    tasks of the dbt task group are one stage ("dbt"): it ends when the next stage starts.

    ``write`` receives each line; ``settings`` opens the warehouse for the gate verdicts.
    """

    def __init__(self, write: Callable[[str], None], settings: Settings):
        self.write = write
        self.settings = settings
        self.started: dict[str, float] = {}
        self.dbt_tasks = 0

    @staticmethod
    def stage_of(task_id: str) -> str:
        return task_id.split(".", 1)[0] if "." in task_id else task_id

    def _start(self, stage: str) -> None:
        if stage in self.started:
            return
        self._close_dbt(stage)
        self.started[stage] = time.monotonic()
        self.write(f"  {stage} ...")

    def _close_dbt(self, next_stage: str) -> None:
        if next_stage != "dbt" and "dbt" in self.started and self.dbt_tasks >= 0:
            elapsed = time.monotonic() - self.started["dbt"]
            self.write(f"  dbt: done in {elapsed:.1f}s ({self.dbt_tasks} dbt tasks)")
            self.dbt_tasks = -1  # reported

    def _end(self, task_id: str, ok: bool, error: object = None, map_index: int = -1) -> None:
        stage = self.stage_of(task_id)
        if stage == "dbt":
            if ok:
                self.dbt_tasks += 1
                return
        elapsed = time.monotonic() - self.started.get(stage, time.monotonic())
        # a mapped task's instances are the user shards: each line says which one ended
        shards = self.settings.user_shards
        label = (
            f"{stage} (shard {map_index + 1} of {shards})"
            if shards > 1 and map_index >= 0
            else stage
        )
        if ok:
            verdict = self._gate_verdict(stage) if stage.startswith("gate__") else ""
            self.write(f"  {label}: done in {elapsed:.1f}s{verdict}")
        else:
            reason = str(error or "").strip().splitlines()
            detail = f": {reason[0][:200]}" if reason else ""
            self.write(f"  {label}: FAILED after {elapsed:.1f}s{detail}")
            if stage == "dbt":
                self.dbt_tasks = -1

    def _gate_verdict(self, stage: str) -> str:
        """`` - gate pass (7 checks)`` / `` - gate WARN (1 of 7 checks warn: ...)``."""
        from recpipe.warehouse import session

        try:
            with session(self.settings) as wh:
                rows = wh.query_df(
                    f"select check_name, status from {wh.table('recpipe', 'dq_results')} "
                    "where run_id = @r and stage = @s",
                    {"r": self.run_id, "s": stage.removeprefix("gate__")},
                )
        except Exception as err:  # noqa: BLE001 - the verdict is a courtesy of the display
            log.debug("no gate verdict for %s: %s", stage, err)
            return ""
        if rows.empty:
            return ""
        warned = sorted(rows.loc[rows["status"] == "warn", "check_name"])
        if warned:
            return f" - gate WARN ({len(warned)} of {len(rows)} checks warn: {', '.join(warned)})"
        return f" - gate pass ({len(rows)} checks)"

    run_id = ""

    # the Airflow listener interface (airflow.listeners.spec.taskinstance) -------------------
    def on_task_instance_running(self, previous_state, task_instance):
        self.run_id = str(task_instance.run_id)
        self._start(self.stage_of(task_instance.task_id))

    def on_task_instance_success(self, previous_state, task_instance):
        self._end(task_instance.task_id, ok=True, map_index=_map_index(task_instance))

    def on_task_instance_failed(self, previous_state, task_instance, error):
        self._end(task_instance.task_id, ok=False, error=error, map_index=_map_index(task_instance))


def _map_index(task_instance) -> int:
    """The instance's index in its mapped task (-1: not mapped)."""
    index = getattr(task_instance, "map_index", -1)
    return -1 if index is None else int(index)


def _listener(progress: StageProgress):
    """Wrap ``progress`` in an object whose methods carry Airflow's hookimpl markers."""
    from airflow.listeners import hookimpl

    class Listener:
        @hookimpl
        def on_task_instance_running(self, previous_state, task_instance):
            progress.on_task_instance_running(previous_state, task_instance)

        @hookimpl
        def on_task_instance_success(self, previous_state, task_instance):
            progress.on_task_instance_success(previous_state, task_instance)

        @hookimpl
        def on_task_instance_failed(self, previous_state, task_instance, error):
            progress.on_task_instance_failed(previous_state, task_instance, error)

    return Listener()


def run_dag(
    settings: Settings,
    as_of: date,
    conf: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> DagRunOutcome:
    """Run the DAG for logical date ``as_of`` and report its state and task timings;
    ``progress``, when given, receives one line as each stage starts and ends."""
    configure_airflow(settings)
    dag = load_dag()
    logical_date = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    listener = None
    if progress is not None:
        from airflow.sdk.listener import get_listener_manager

        listener = _listener(StageProgress(progress, settings))
        get_listener_manager().add_listener(listener)
    try:
        dag_run = dag.test(logical_date=logical_date, run_conf=dict(conf or {}))
    finally:
        if listener is not None:
            get_listener_manager().pm.unregister(listener)
    outcome = _outcome(as_of, dag_run)
    outcome.dag_start = dag.start_date.date() if dag.start_date else None
    return outcome


def _outcome(as_of: date, dag_run) -> DagRunOutcome:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    outcome = DagRunOutcome(as_of=as_of, run_id=dag_run.run_id, state=str(dag_run.state))
    with create_session() as db:
        tis = (
            db.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        for ti in tis:
            if ti.start_date and ti.end_date:
                seconds = (ti.end_date - ti.start_date).total_seconds()
                # a mapped task (one per user shard) counts the seconds of all its instances
                outcome.task_seconds[ti.task_id] = outcome.task_seconds.get(ti.task_id, 0) + seconds
            if str(ti.state) in ("success", "failed"):
                outcome.tasks_run.append(ti.task_id)
            if str(ti.state) == "failed":
                outcome.failed_tasks.append(ti.task_id)
    outcome.state = outcome.state.split(".")[-1].lower()
    return outcome
