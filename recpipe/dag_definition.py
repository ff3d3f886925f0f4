"""What the ``recpipe_daily`` DAG file is built from, beside its tasks: its id, how many runs and
tasks may run at once on the warehouse, and how cosmos runs dbt (watcher mode's producer and
sensors). Imported where the DAG is parsed; nothing here starts Airflow or touches data."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from recpipe.settings import Settings

DAG_ID = "recpipe_daily"
WAREHOUSE_POOL = "recpipe_warehouse"
log = logging.getLogger(__name__)
# A watcher sensor reads a status the ended build left in XCom: its first poke finds it. This
# bounds a sensor that, whatever goes wrong, would otherwise poke for cosmos' default 7 days.
WATCHER_SENSOR_TIMEOUT_S = 900


def dag_concurrency(settings: Settings) -> dict[str, Any]:
    """How many runs and tasks of ``recpipe_daily`` may run at once on this warehouse.

    DuckDB has a single writer: one run at a time, and every task in a one-slot pool, so two
    tasks (LocalExecutor runs several) never open the file together. BigQuery: runs of
    different dates at once (``RECPIPE_MAX_ACTIVE_RUNS``, default 4), their tasks in parallel
    in Airflow's default pool. No table a run writes is shared with another date's run:
    per-cutoff tables replace only their own partitions, the run's cutoffs are computed inside
    each dbt model (ephemeral ``int_cutoffs``), dbt's scratch tables carry a timestamp and
    recpipe's batch and staging tables a random or date suffix; the dbt builds themselves take
    turns (:func:`dbt_producer_args`).
    """
    if settings.single_writer:
        return {"max_active_runs": 1, "pool": WAREHOUSE_POOL}
    return {"max_active_runs": settings.max_active_runs, "pool": "default_pool"}


def dbt_execution_mode():
    """How cosmos runs dbt, on every warehouse: one ``dbt build`` (the producer task) watched
    per node by a sensor (``WATCHER``), instead of one dbt process per model and per test.

    DuckDB: one start-up instead of ~76 and one writer at a time anyway. BigQuery: the build
    runs the profile's 4 threads of jobs and holds one worker slot; ``AIRFLOW_ASYNC`` would free
    that slot but needs a triggerer and the Google provider's BigQuery operators
    (docs/decisions.md)."""
    from cosmos.constants import ExecutionMode

    return ExecutionMode.WATCHER


def dbt_producer_args() -> dict[str, Any]:
    """Arguments of the watcher's producer task (the one ``dbt build`` of a run).

    One build at a time across every run of the DAG (``max_active_tis_per_dag``). BigQuery
    runs of different dates overlap, and a dbt build reads which tables exist once, when it
    starts: on empty datasets the second of two overlapping builds would ``create or replace``
    a per-cutoff table the first had just created, wiping that date's partitions (measured on
    the emulator, docs/decisions.md). Serial builds see every table a build before them made;
    the runs' other tasks still overlap. DuckDB runs one task at a time anyway. The callback
    keeps the build's ``run_results.json`` (:func:`keep_dbt_run_results`).
    """
    return {"max_active_tis_per_dag": 1, "callback": keep_dbt_run_results}


def dbt_task_env(settings: Settings) -> dict[str, str]:
    """Environment of the dbt tasks: the profile's variables, and no dbt file log.

    cosmos runs dbt in a temporary copy of the project and deletes it, ``logs/dbt.log`` with
    it, when the task ends; at dbt's default debug level that file cost the build's threads a
    write per event (~4 s of CPU in a 100k-event run). What dbt reports reaches the task log
    through cosmos either way.
    """
    return {**settings.dbt_env(), "DBT_LOG_LEVEL_FILE": "none"}


def dbt_watcher_args() -> dict[str, Any]:
    """Sensor arguments for watcher mode: plain pokes, no triggerer needed.

    The sensors start only once the build has ended (:func:`watch_after_build`), so the first
    poke finds the node's status; ``deferrable`` would need an Airflow triggerer for nothing.
    """
    return {"deferrable": False, "poke_interval": 1, "timeout": WATCHER_SENSOR_TIMEOUT_S}


# dbt events cosmos' producer turns into a node's ``<node>_dbt_event`` XCom besides the final
# one. The key is overwritten by each event and read only once, by the node's sensor, after the
# build ended (:func:`watch_after_build`): the three earlier pushes per node are lost work.
EARLIER_NODE_EVENTS = frozenset({"NodeStart", "NodeCompiling", "NodeExecuting"})


def push_final_node_events_only() -> None:
    """Make cosmos' watcher producer push a node's dbt event to XCom once, when it finished
    (or failed), instead of at each of its four status events.

    Each push is an Execution API call that the producer's dbt threads make one at a time
    under a lock, 852 of them for the 213 nodes of a build; a sensor logs only the last. The
    ``_status`` XComs the sensors decide on are pushed elsewhere and untouched. cosmos has no
    setting for this, so it trims its module-level allow-list (a private name:
    tests/unit/test_dag_definition.py fails when a cosmos upgrade moves it; until then a
    missing name only logs a warning and every event is pushed as before).
    """
    try:
        from cosmos.operators._watcher import base
    except ImportError:  # pragma: no cover - cosmos moved the module
        log.warning("cosmos' watcher module moved: every dbt node event goes to XCom")
        return
    allowed = getattr(base, "_DBT_EVENT_ALLOWLIST", None)
    if not isinstance(allowed, frozenset) or "NodeFinished" not in allowed:
        log.warning("cosmos' watcher has no event allow-list: every dbt node event goes to XCom")
        return
    base._DBT_EVENT_ALLOWLIST = allowed - EARLIER_NODE_EVENTS


# Attribute of the watcher's producer: the XCom keys of nodes that no sensor reads (set when the
# DAG file is parsed, so every worker that runs the producer has it).
UNREAD_KEYS_ATTR = "recpipe_unread_node_xcom_keys"
# Attribute of the producer's task instance: what it pushed under each key in this try.
PUSHED_ATTR = "_recpipe_pushed_xcoms"


def push_only_what_sensors_read(group) -> None:
    """Make the watcher's producer of ``group`` push a node's XComs only when a sensor reads them.

    cosmos pushes a ``_dbt_event`` for every node and a ``_tests_status`` for every model a test
    belongs to, but a sensor reads the four keys of its own node only (status or tests status,
    dbt event, compiled SQL): a test inside a ``<model>.test`` sensor has no reader. Each push
    is an Execution API call (~20 ms) that the build's threads make one at a time: 215 + 128 of
    them for 75 sensors in a 100k run, ~210 unread. Only the per-node keys of the group's dbt
    graph that no sensor reads are dropped; any other key passes, and a producer without the
    attribute (another DAG) pushes everything.
    """
    from cosmos.constants import PRODUCER_WATCHER_TASK_ID

    tasks = {task.task_id: task for task in group.iter_tasks()}
    producer = tasks.get(f"{group.group_id}.{PRODUCER_WATCHER_TASK_ID}")
    graph = getattr(group, "dbt_graph", None)
    if producer is None or graph is None:
        return
    read = {
        key
        for task in tasks.values()
        if getattr(task, "model_unique_id", None)
        for key in _node_xcom_keys(task.model_unique_id)
    }
    every = {key for unique_id in graph.nodes for key in _node_xcom_keys(unique_id)}
    setattr(producer, UNREAD_KEYS_ATTR, frozenset(every - read))
    _install_unread_push_filter()


def _node_xcom_keys(unique_id: str) -> list[str]:
    """The XCom keys cosmos' producer derives from a node's id (cosmos' own key functions)."""
    from cosmos.operators._watcher import aggregation, state

    return [
        state.get_status_xcom_key(unique_id),
        aggregation.get_tests_status_xcom_key(unique_id),
        state.get_dbt_event_xcom_key(unique_id),
        state.get_compiled_sql_xcom_key(unique_id),
    ]


def _install_unread_push_filter() -> None:
    """Swap cosmos' ``safe_xcom_push`` where the producer's event callback calls it (the
    watcher's ``base`` and ``aggregation`` modules) for one that skips the producer's unread
    node keys. Idempotent; if cosmos moves the name, the DAG fails to import
    (tests/dags/test_recpipe_daily_dag.py)."""
    from cosmos.operators._watcher import aggregation, base, state

    push = state.safe_xcom_push

    def push_if_read(task_instance, key: str, value: Any) -> None:
        task = getattr(task_instance, "task", None)
        if key in getattr(task, UNREAD_KEYS_ATTR, frozenset()):
            return
        pushed = getattr(task_instance, PUSHED_ATTR, None)
        if pushed is None:
            pushed = {}
            setattr(task_instance, PUSHED_ATTR, pushed)
        if key in pushed and pushed[key] == value:
            return  # a test's status again, after its model's aggregate was already pushed
        push(task_instance=task_instance, key=key, value=value)
        pushed[key] = value

    push_if_read.recpipe_filter = True
    for module in (base, aggregation):
        if not getattr(module.safe_xcom_push, "recpipe_filter", False):
            module.safe_xcom_push = push_if_read


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


def watch_after_build(group, manifest: Path) -> None:
    """In watcher mode, start the per-node sensors of ``group`` once its ``dbt build`` ended.

    cosmos starts the root sensors beside the producer (for ``DbtTaskGroup``). On DuckDB every
    task shares a one-slot pool, so a sensor holding the slot would wait forever for a producer
    that cannot start; and ``dag.test`` runs one task at a time. Downstream of the producer with
    trigger rule ``one_done`` (the producer is their only upstream), a sensor reads its node's
    final status from the producer's XCom whether the build passed or failed, and a failed model
    or test still fails its sensor. When the producer never ran (a gate before dbt failed: it is
    ``upstream_failed``), ``one_done`` skips the sensors: ``all_done`` would start them, and
    cosmos' sensor polls for a status that never comes. From ``manifest`` (the one the group was
    rendered from), each test on several models reports to one model's ``<model>.test`` sensor
    (:func:`multi_model_test_owners`, :func:`tests_per_owner`).
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
        task.trigger_rule = "one_done"
    producer.tests_per_model = tests_per_owner(
        producer.tests_per_model, multi_model_test_owners(manifest)
    )
    # A `<model>.test` sensor turns red on any of its model's tests: name them in its
    # documentation (the task's details in the UI); the producer's log says which one failed.
    for task_id, task in tasks.items():
        tests = producer.tests_per_model.get(getattr(task, "model_unique_id", None))
        if task_id.endswith(".test") and tests:
            names = "\n".join(f"- `{test.split('.', 2)[-1]}`" for test in sorted(tests))
            task.doc_md = (
                f"The dbt tests of `{task.model_unique_id}` ({len(tests)}), from the run's one "
                f"`dbt build`; the log of `{producer.task_id}` names any that failed:\n\n{names}"
            )


def multi_model_test_owners(manifest: Path) -> dict[str, str]:
    """The one model each dbt test on several models belongs to, from the dbt manifest: the
    model it is declared on (``attached_node``: a relationships test belongs to the model whose
    column it checks), else the parent that every other parent is upstream of; a test with no
    such parent is left out (it stays with each of its parents)."""
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"]

    def parents(unique_id: str) -> list[str]:
        return [
            p for p in nodes.get(unique_id, {}).get("depends_on", {}).get("nodes", []) if p in nodes
        ]

    ancestors: dict[str, set[str]] = {}

    def upstream(unique_id: str) -> set[str]:
        if unique_id not in ancestors:
            ancestors[unique_id] = set()  # a cycle (dbt forbids them) ends here
            ancestors[unique_id] = {a for p in parents(unique_id) for a in (p, *upstream(p))}
        return ancestors[unique_id]

    owners = {}
    for unique_id, node in nodes.items():
        models = parents(unique_id)
        if node.get("resource_type") != "test" or len(models) < 2:
            continue
        owner = node.get("attached_node")
        if owner not in models:
            owner = next((m for m in models if set(models) - {m} <= upstream(m)), None)
        if owner is not None:
            owners[unique_id] = owner
    return owners


def tests_per_owner(
    tests_per_model: dict[str, list[str]], owners: dict[str, str]
) -> dict[str, list[str]]:
    """``tests_per_model`` (cosmos lists a test on several models under each of them) with each
    test under its owner only, so a ``<model>.test`` sensor shows the model's own tests and a
    parent stays green when a test of a model downstream of it fails. A model left with no test
    keeps the ones it had: its sensor would otherwise wait for a status no test reports."""
    owned = {
        model: [t for t in tests if owners.get(t, model) == model]
        for model, tests in tests_per_model.items()
    }
    return {model: owned[model] or tests for model, tests in tests_per_model.items()}
