"""DagBag integrity: the DAG imports cleanly and has exactly the task graph SPEC describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recpipe.settings import DAGS_DIR, DBT_PROJECT_DIR

PYTHON_TASKS = [
    "run__resolve_params",
    "gate__raw",
    "gate__features",
    "candidates__python_sources",
    "candidates__python_merge",
    "gate__candidates",
    "model__train_or_load",
    "gate__model",
    "score__rank_candidates",
    "gate__output",
    "publish__recommendations",
    "run__record_failure",
]
GATES = [t for t in PYTHON_TASKS if t.startswith("gate__")]
# DuckDB runs dbt in watcher mode: one `dbt build` (the producer) and a sensor per model and test.
PRODUCER = "dbt.dbt_producer_watcher"
WATCHER_TASKS = {PRODUCER, "dbt.dbt_producer_watcher_done"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["recpipe_daily"]


def dbt_models() -> list[str]:
    return sorted(p.stem for p in (DBT_PROJECT_DIR / "models").rglob("*.sql"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["recpipe_daily"]


def test_exact_task_set(dag):
    models = dbt_models()
    assert len(models) >= 10
    dbt_tasks = {f"dbt.{m}.run" for m in models} | {f"dbt.{m}.test" for m in models}
    # A test on several models (relationships, point-in-time checks) has no task of its own: it
    # reports to the `<model>.test` of the model it belongs to (see the test below).
    assert set(dag.task_ids) == set(PYTHON_TASKS) | dbt_tasks | WATCHER_TASKS


def test_stage_order(dag):
    def down(task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids

    assert down("run__resolve_params") >= {"gate__raw", "run__record_failure"}
    # The one `dbt build` starts after the raw gate; the first sensors once it has ended.
    assert down("gate__raw") == {PRODUCER}
    first_dbt = {
        t
        for t in dag.task_ids
        if t.startswith("dbt.")
        and t not in WATCHER_TASKS
        and dag.get_task(t).upstream_task_ids == {PRODUCER}
    }
    assert {"dbt.stg_shop__events.run", "dbt.int_cutoffs.run"} <= first_dbt
    assert all(t.endswith(".run") for t in first_dbt)
    last_dbt = {t for t in dag.task_ids if t.startswith("dbt.") and "gate__features" in down(t)}
    assert last_dbt - {"dbt.dbt_producer_watcher_done"}
    assert all(t.endswith("test") for t in last_dbt - {"dbt.dbt_producer_watcher_done"})
    assert down("gate__features") == {"candidates__python_sources"}
    assert down("candidates__python_sources") == {"candidates__python_merge"}
    assert down("candidates__python_merge") == {"gate__candidates"}
    assert down("gate__candidates") == {"model__train_or_load"}
    assert down("model__train_or_load") == {"gate__model", "score__rank_candidates"}
    assert down("gate__model") == {"score__rank_candidates"}
    assert down("score__rank_candidates") == {"gate__output"}
    assert down("gate__output") == {"publish__recommendations"}
    assert down("publish__recommendations") == {"run__record_failure"}
    assert down("run__record_failure") == set()


def test_every_dbt_model_is_tested_right_after_it_runs(dag):
    for model in dbt_models():
        assert dag.get_task(f"dbt.{model}.run").downstream_task_ids == {f"dbt.{model}.test"}


def test_recpipes_airflow_environment_reaches_cosmos():
    """recpipe's Airflow (tests/conftest.py applies the same environment) turns off the
    watcher's per-node Variable backup: a misspelt key would leave cosmos' default on."""
    from cosmos import settings

    assert settings.enable_watcher_reliable_retry is False


def test_dbt_runs_as_one_build_watched_by_a_sensor_per_model_and_test(dag):
    from cosmos.operators.watcher import (
        DbtProducerWatcherOperator,
        DbtRunWatcherOperator,
        DbtTestWatcherOperator,
    )

    producer = dag.get_task(PRODUCER)
    assert isinstance(producer, DbtProducerWatcherOperator)
    assert producer.retries == 0  # cosmos skips a producer retry; a rerun is a new DAG run
    assert producer.max_active_tis_per_dag == 1  # builds of overlapping runs take turns
    assert "xcom_pull(task_ids='run__resolve_params')['as_of']" in producer.vars["as_of"]
    assert producer.env["RECPIPE_DUCKDB_PATH"]
    # Every test reports to one `<model>.test` sensor (a test on several models too).
    listed = [test for tests in producer.tests_per_model.values() for test in tests]
    assert listed and len(listed) == len(set(listed))
    ephemeral = {"int_cutoffs", "int_events_before_cutoffs"}  # compiled into their users
    sensors = {t for t in dag.task_ids if t.startswith("dbt.")} - WATCHER_TASKS
    for task_id in sensors:
        task = dag.get_task(task_id)
        model = task_id.split(".")[1]
        if task_id.endswith(".run") and model in ephemeral:
            continue
        kind = DbtRunWatcherOperator if task_id.endswith(".run") else DbtTestWatcherOperator
        assert isinstance(task, kind), task_id
        # No triggerer needed, and no retry: a retried sensor would rerun dbt on its own.
        assert task.deferrable is False and task.retries == 0, task_id
        # Every sensor starts after the build ended (directly or through other sensors).
        assert PRODUCER in {u.task_id for u in task.get_flat_relatives(upstream=True)}, task_id
    roots = {t for t in sensors if dag.get_task(t).upstream_task_ids == {PRODUCER}}
    # A root sensor reads its node's result also when the build failed, and is skipped when the
    # build never ran (a gate before dbt failed): cosmos' sensor would poll forever for it ...
    assert roots and all(dag.get_task(t).trigger_rule == "one_done" for t in roots)
    # ... the others only after everything they depend on passed: a failed test gates its users.
    for task_id in sensors - roots:
        assert dag.get_task(task_id).trigger_rule == "all_success", task_id


def test_a_test_on_several_models_belongs_to_the_model_it_is_declared_on(dag):
    """Its status goes to that model's `<model>.test` only: the models it reads (the catalog,
    the cutoffs) stay green when it fails, and the model it checks turns red."""
    from recpipe.settings import load_settings

    manifest = json.loads(load_settings().dbt_manifest.read_text(encoding="utf-8"))["nodes"]
    tests_per_model = dag.get_task(PRODUCER).tests_per_model
    owner_of = {test: model for model, tests in tests_per_model.items() for test in tests}
    several = {
        uid: node
        for uid, node in manifest.items()
        if node["resource_type"] == "test" and len(node["depends_on"]["nodes"]) >= 2
    }
    assert len(several) >= 30
    declared = {
        uid: node["attached_node"] for uid, node in several.items() if node.get("attached_node")
    }
    assert {uid: owner_of[uid] for uid in declared} == declared
    # a singular test on several models: the one the others are upstream of
    singular = "test.recpipe.assert_labels_only_for_train_and_valid_cutoffs"
    assert set(several[singular]["depends_on"]["nodes"]) == {
        "model.recpipe.int_labels",
        "model.recpipe.int_cutoffs",
    }
    assert owner_of[singular] == "model.recpipe.int_labels"
    # the sensor's documentation (its details in the UI) names every test it reports
    sensor = dag.get_task("dbt.stg_shop__events.test")
    relationship = next(t for t in declared if declared[t] == "model.recpipe.stg_shop__events")
    assert f"`{relationship.split('.', 2)[-1]}`" in sensor.doc_md
    for test in tests_per_model["model.recpipe.stg_shop__events"]:
        assert f"`{test.split('.', 2)[-1]}`" in sensor.doc_md
    # every model keeps a test of its own: no `<model>.test` waits for a status none reports
    models = {f"model.recpipe.{m}" for m in dbt_models()}
    assert models <= {model for model, tests in tests_per_model.items() if tests}


class RecordingProducerInstance:
    """What cosmos' push sees of the producer's task instance: its task and ``xcom_push``."""

    def __init__(self, task) -> None:
        self.task = task
        self.pushed: list[str] = []

    def xcom_push(self, key: str, value) -> None:
        self.pushed.append(key)


def test_the_producer_pushes_only_the_node_xcoms_a_sensor_reads(dag):
    from cosmos.operators._watcher import aggregation, base, state

    from recpipe.dag_definition import UNREAD_KEYS_ATTR

    producer = dag.get_task(PRODUCER)
    unread = getattr(producer, UNREAD_KEYS_ATTR)
    sensors = {t for t in dag.task_ids if t.startswith("dbt.")} - WATCHER_TASKS
    read = set()
    for task_id in sensors:
        node = getattr(dag.get_task(task_id), "model_unique_id", None)
        if node is None:  # an ephemeral model's placeholder: nothing to read
            continue
        read |= {
            state.get_status_xcom_key(node),
            aggregation.get_tests_status_xcom_key(node),
            state.get_dbt_event_xcom_key(node),
            state.get_compiled_sql_xcom_key(node),
        }
    assert not unread & read
    # a test inside `stg_shop__events.test` has no sensor of its own: nobody reads its event
    inside = producer.tests_per_model["model.recpipe.stg_shop__events"][0]
    assert state.get_dbt_event_xcom_key(inside) in unread

    ti = RecordingProducerInstance(producer)
    model = "model.recpipe.stg_shop__events"
    base.safe_xcom_push(task_instance=ti, key=state.get_dbt_event_xcom_key(inside), value={})
    base.safe_xcom_push(task_instance=ti, key=state.get_status_xcom_key(model), value="success")
    for _ in range(2):  # a test's status arriving again re-pushes the same aggregate
        aggregation.safe_xcom_push(
            task_instance=ti, key=aggregation.get_tests_status_xcom_key(model), value="pass"
        )
    aggregation.safe_xcom_push(
        task_instance=ti, key=aggregation.get_tests_status_xcom_key(model), value="fail"
    )
    base.safe_xcom_push(task_instance=ti, key="dbt_startup_events", value=[])
    assert ti.pushed == [
        state.get_status_xcom_key(model),
        aggregation.get_tests_status_xcom_key(model),
        aggregation.get_tests_status_xcom_key(model),  # a changed value goes out again
        "dbt_startup_events",
    ]


class RecordingValues(RecordingProducerInstance):
    def __init__(self, task) -> None:
        super().__init__(task)
        self.values: dict[str, object] = {}

    def xcom_push(self, key: str, value) -> None:
        super().xcom_push(key, value)
        self.values[key] = value


def test_a_failed_test_on_two_models_turns_only_its_own_models_test_sensor_red(dag):
    """What the producer reports, through cosmos' own aggregation, when every test of the build
    passes but the relationships test from the events to the users: the events' `<model>.test`
    reads fail, the users' (the model it references) pass."""
    from cosmos.operators._watcher import aggregation

    producer = dag.get_task(PRODUCER)
    tests_per_model = producer.tests_per_model
    events, users = "model.recpipe.stg_shop__events", "model.recpipe.stg_shop__users"
    broken = next(t for t in tests_per_model[events] if t.startswith("test.recpipe.relationships"))
    assert users.split(".")[-1] in broken
    ti, results = RecordingValues(producer), {}
    for test in sorted({t for tests in tests_per_model.values() for t in tests}):
        aggregation.push_test_result_or_aggregate(
            test, "fail" if test == broken else "pass", tests_per_model, results, ti
        )
    status = {
        model: ti.values.get(aggregation.get_tests_status_xcom_key(model))
        for model in (events, users)
    }
    assert status == {events: "fail", users: "pass"}
    failed = {
        key for key, value in ti.values.items() if key.endswith("_tests_status") and value == "fail"
    }
    assert failed == {aggregation.get_tests_status_xcom_key(events)}


def test_schedule_params_retries_tags(dag):
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.tags) >= {"recpipe"}
    assert dag.doc_md and "recpipe_daily" in dag.doc_md
    assert dag.start_date.tzinfo is not None
    assert set(dag.params.keys()) == {"k", "retrain", "as_of"}
    assert dag.params["k"] == 20 and dag.params["retrain"] == "auto"
    assert dag.params["as_of"] is None
    work = [
        "candidates__python_sources",
        "candidates__python_merge",
        "model__train_or_load",
        "score__rank_candidates",
        "publish__recommendations",
    ]
    for task_id in work:
        assert dag.get_task(task_id).retries == 2, task_id
    for task_id in GATES:  # a failed gate is a verdict, not a glitch: no retry
        assert dag.get_task(task_id).retries == 0, task_id
    assert dag.get_task("run__record_failure").trigger_rule == "one_failed"


def test_duckdb_runs_one_task_at_a_time_in_the_warehouse_pool(dag):
    # LocalExecutor runs several tasks at once; DuckDB allows one writer and dbt-duckdb does not
    # wait for the lock, so every task, dbt ones included, shares a one-slot pool.
    pools = {task.task_id: task.pool for task in dag.tasks}
    assert set(pools.values()) == {"recpipe_warehouse"}, pools
    assert dag.max_active_runs == 1


def test_dag_file_only_wires():
    source = Path(DAGS_DIR / "recpipe_daily.py").read_text()
    for heavy in ("import lightgbm", "import pandas", "import duckdb", "import implicit"):
        assert heavy not in source


def test_every_task_has_a_timeout_and_the_run_has_alerts_and_a_time_limit(dag):
    from recpipe import notify

    no_timeout = [t.task_id for t in dag.tasks if t.execution_timeout is None]
    assert no_timeout == []
    assert {t.execution_timeout for t in dag.tasks} == {notify.task_timeout()}
    assert dag.dagrun_timeout == notify.run_timeout()

    def callbacks(value) -> list:
        return value if isinstance(value, list) else [value]

    assert notify.on_run_failed in callbacks(dag.on_failure_callback)
    assert notify.on_run_succeeded in callbacks(dag.on_success_callback)
    assert not dag.deadline  # RECPIPE_PUBLISH_BY unset: no deadline


def test_publish_by_setting_adds_an_airflow_deadline_alert(monkeypatch):
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RECPIPE_PUBLISH_BY", "07:15")
    monkeypatch.setenv("RECPIPE_TASK_TIMEOUT_MINUTES", "45")
    dag = DagBag(dag_folder=str(DAGS_DIR)).dags["recpipe_daily"]
    (alert,) = dag.deadline
    assert alert.interval == timedelta(hours=7, minutes=15)
    assert type(alert.reference).__name__ == "DagRunLogicalDateDeadline"
    assert {t.execution_timeout for t in dag.tasks} == {timedelta(minutes=45)}


@pytest.mark.parametrize("shards", [1, 4])
def test_python_candidates_and_scoring_are_one_mapped_task_per_user_shard(monkeypatch, shards):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RECPIPE_USER_SHARDS", str(shards))
    dag = DagBag(dag_folder=str(DAGS_DIR)).dags["recpipe_daily"]
    # the task after the shards waits for every one: one failed shard merges or publishes nothing
    for mapped, after in (
        ("candidates__python_sources", "candidates__python_merge"),
        ("score__rank_candidates", "gate__output"),
    ):
        task = dag.get_task(mapped)
        assert task.op_kwargs_expand_input.value == {"shard": list(range(shards))}
        assert task.downstream_task_ids == {after}
        assert dag.get_task(after).trigger_rule == "all_success"
