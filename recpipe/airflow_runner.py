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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from recpipe.settings import DAGS_DIR, PLUGINS_DIR, Settings

log = logging.getLogger(__name__)

DAG_ID = "recpipe_daily"
WAREHOUSE_POOL = "recpipe_warehouse"


def dag_concurrency(settings: Settings) -> dict[str, Any]:
    """How many runs and tasks of ``recpipe_daily`` may run at once on this warehouse.

    DuckDB has a single writer: one run at a time, and every task in a one-slot pool, so two
    tasks (LocalExecutor runs several) never open the file together. BigQuery: runs of
    different dates at once (``RECPIPE_MAX_ACTIVE_RUNS``, default 4), their tasks in parallel
    in Airflow's default pool. No table a run writes is shared with another date's run:
    per-cutoff tables replace only their own partitions, the run's cutoffs are computed inside
    each dbt model (ephemeral ``int_cutoffs``), dbt's scratch tables carry a timestamp and
    recpipe's batch and staging tables a random or date suffix.
    """
    if settings.warehouse == "duckdb":
        return {"max_active_runs": 1, "pool": WAREHOUSE_POOL}
    return {"max_active_runs": settings.max_active_runs, "pool": "default_pool"}


def dbt_execution_mode(settings: Settings):
    """How cosmos runs dbt: DuckDB one ``dbt build`` watched per node (``WATCHER``), BigQuery
    one dbt process per model and per test (``LOCAL``)."""
    from cosmos.constants import ExecutionMode

    return ExecutionMode.WATCHER if settings.warehouse == "duckdb" else ExecutionMode.LOCAL


def dbt_watcher_args(settings: Settings) -> dict[str, Any]:
    """Sensor arguments for watcher mode: plain pokes, no triggerer needed.

    The sensors start only once the build has ended (:func:`watch_after_build`), so the first
    poke finds the node's status; ``deferrable`` would need an Airflow triggerer for nothing.
    """
    from cosmos.constants import ExecutionMode

    if dbt_execution_mode(settings) != ExecutionMode.WATCHER:
        return {}
    return {"deferrable": False, "poke_interval": 1}


def keep_dbt_run_results(project_dir: str, **_: Any) -> None:
    """cosmos callback after the watcher's ``dbt build``: keep its ``run_results.json`` (the
    time dbt spent in each model and test) as ``$RECPIPE_HOME/dbt/run_results.json``; cosmos
    deletes its temporary project copy afterwards. bench/scale.py reads it."""
    import shutil

    from recpipe.settings import load_settings

    source = os.path.join(project_dir, "target", "run_results.json")
    if not os.path.exists(source):
        log.warning("dbt wrote no run_results.json in %s", project_dir)
        return
    target = load_settings().home / "dbt"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / "run_results.json")


def watch_after_build(group) -> None:
    """In watcher mode, start the per-node sensors of ``group`` once its ``dbt build`` ended.

    cosmos starts the root sensors beside the producer (for ``DbtTaskGroup``). On DuckDB every
    task shares a one-slot pool, so a sensor holding the slot would wait forever for a producer
    that cannot start; and ``dag.test`` runs one task at a time. Downstream of the producer with
    trigger rule ``all_done``, a sensor reads its node's final status from the producer's XCom
    whether the build passed or failed, and a failed model or test still fails its sensor.
    """
    from cosmos.constants import PRODUCER_WATCHER_DONE_TASK_ID, PRODUCER_WATCHER_TASK_ID

    tasks = {task.task_id: task for task in group.iter_tasks()}
    producer = tasks.get(f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}")
    if producer is None:
        return
    done = f"{group.group_id}.{PRODUCER_WATCHER_DONE_TASK_ID}"
    roots = [
        task
        for task_id, task in tasks.items()
        if task_id not in {producer.task_id, done} and not (task.upstream_task_ids & set(tasks))
    ]
    for task in roots:
        producer >> task
        task.trigger_rule = "all_done"
    # A test on several models (relationships) has its own sensor, which waits for the status
    # the producer pushes for a "model" of that name: register the test as its own model. cosmos
    # also counted it in each parent's `<model>.test`, which then turned red when the test was
    # skipped because another parent failed: each `<model>.test` shows the model's own tests.
    detached = {
        task.model_unique_id
        for task_id, task in tasks.items()
        if getattr(task, "is_test_sensor", False) and not task_id.endswith(".test")
    }
    own = {m: [t for t in ts if t not in detached] for m, ts in producer.tests_per_model.items()}
    producer.tests_per_model = {m: ts for m, ts in own.items() if ts} | {t: [t] for t in detached}


@dataclass
class DagRunOutcome:
    as_of: date
    run_id: str
    state: str
    task_seconds: dict[str, float] = field(default_factory=dict)
    failed_tasks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "success"


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
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"airflow db migrate failed: {' '.join(tail)}")
        open(marker, "w").close()
    if settings.warehouse == "duckdb":
        _ensure_pool()


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
    """The ``recpipe_daily`` DAG, parsed from the dags folder, with import errors surfaced."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        first = next(iter(bag.import_errors.values())).strip().splitlines()[-1]
        raise RuntimeError(f"the DAG folder has import errors: {first}")
    return bag.get_dag(DAG_ID)


def run_dag(settings: Settings, as_of: date, conf: dict[str, Any] | None = None) -> DagRunOutcome:
    """Run the DAG for logical date ``as_of`` and report its state and task timings."""
    configure_airflow(settings)
    dag = load_dag()
    logical_date = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    dag_run = dag.test(logical_date=logical_date, run_conf=dict(conf or {}))
    return _outcome(as_of, dag_run)


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
                outcome.task_seconds[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
            if str(ti.state) == "failed":
                outcome.failed_tasks.append(ti.task_id)
    outcome.state = outcome.state.split(".")[-1].lower()
    return outcome
