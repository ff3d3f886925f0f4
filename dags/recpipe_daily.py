"""
### recpipe_daily

Fresh top-K recommendations for every active user, published once a day.

For as-of date **D** (the logical date; the `as_of` param overrides it for manual runs) every
stage uses only events before D:

1. `run__resolve_params` validates params and records the run in `recpipe.pipeline_runs`;
2. `gate__raw` checks the raw tables (schema, nulls, freshness and volume against D);
3. `dbt` builds staging, features and SQL candidate sources, each model tested right after it;
4. `gate__features`, then `candidates__python_sources` (ALS, item-kNN, TIFU-kNN; one mapped task
   per user shard), `candidates__python_merge` (all shards in at once), `gate__candidates`;
5. `model__train_or_load` (LightGBM lambdarank), `gate__model` against the popularity baseline;
6. `score__rank_candidates` (one mapped task per user shard, `RECPIPE_USER_SHARDS`) writes the
   top K to staging tables, `gate__output` audits them all, `publish__recommendations` swaps
   them into `recpipe.recommendations` in one transaction.

A failed gate fails its task with a one-line reason; nothing is published and earlier
outputs stay exactly as they were. One run at a time on DuckDB (single writer), every task in the
one-slot pool `recpipe_warehouse`; backfills: Airflow's own (UI → Trigger → Backfill).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, chain, dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProjectConfig, RenderConfig
from cosmos.constants import LoadMode, TestBehavior

from recpipe import notify
from recpipe.airflow_tasks import begin, dbt_vars_template, stage
from recpipe.dag_definition import (
    DAG_ID,
    dag_concurrency,
    dbt_execution_mode,
    dbt_producer_args,
    dbt_task_env,
    dbt_watcher_args,
    push_final_node_events_only,
    push_only_what_sensors_read,
    watch_after_build,
)
from recpipe.dbt_manifest import require_manifest
from recpipe.dbt_profile import profile_config
from recpipe.params import DAG_PARAMS
from recpipe.settings import DBT_PROJECT_DIR, dbt_executable, load_settings

RESOLVE = "run__resolve_params"
# The earliest date a run (CLI, trigger form, Airflow backfill) may have: before any shop's data,
# so every historical as-of date runs (Airflow creates a run before start_date with no task at
# all). With catchup=False the scheduler never fills this history: the first scheduled run is
# the latest daily tick when the DAG is unpaused (README "Scheduling and the first date").
HISTORY_START = pendulum.datetime(1970, 1, 1, tz="UTC")
# DuckDB: one run at a time, every task in a one-slot pool; BigQuery: one run, tasks in parallel.
CONCURRENCY = dag_concurrency(load_settings())


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=HISTORY_START,
    catchup=False,
    max_active_runs=CONCURRENCY["max_active_runs"],
    # alerts through the deployment's Airflow notifier, time limits (recpipe.notify)
    on_failure_callback=notify.on_run_failed,
    on_success_callback=notify.on_run_succeeded,
    dagrun_timeout=notify.run_timeout(),
    deadline=notify.deadline_alert(),
    doc_md=__doc__,
    tags=["recpipe", "recommendations", "dbt", "lightgbm"],
    default_args={
        "owner": "personalization",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "pool": CONCURRENCY["pool"],
        "execution_timeout": notify.task_timeout(),
    },
    # one definition of the params for the trigger form and `recpipe run --param`
    params={name: Param(default, **schema) for name, (default, schema) in DAG_PARAMS.items()},
)
def recpipe_daily():
    @task(task_id=RESOLVE, retries=0)
    def resolve_params(
        parsed_with: dict, params=None, logical_date=None, dag_run=None, run_id=None
    ) -> dict:
        run_after = getattr(dag_run, "run_after", None)
        return begin(params, logical_date, run_after, run_id, parsed_with=parsed_with)

    @task(task_id="gate__raw", retries=0)
    def gate_raw(run: dict) -> None:
        from recpipe.pipeline import check_raw

        with stage(run) as current:
            check_raw(current)

    settings = load_settings()
    manifest = require_manifest(settings.dbt_manifest)
    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            DBT_PROJECT_DIR,
            manifest_path=manifest,
            install_dbt_deps=False,
        ),
        profile_config=profile_config(settings),
        execution_config=ExecutionConfig(
            execution_mode=dbt_execution_mode(),
            dbt_executable_path=dbt_executable(),
            setup_operator_args=dbt_producer_args(),
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.AFTER_EACH,
            # a test on several models counts toward the model it is declared on
            # (watch_after_build): one sensor per model's tests, none per such test
            should_detach_multiple_parents_tests=False,
            env_vars=settings.dbt_env(),
        ),
        operator_args={
            "vars": dbt_vars_template(RESOLVE, settings),
            "env": dbt_task_env(settings),
            "append_env": True,
            "install_deps": False,
            "retries": 0,
            **dbt_watcher_args(),
        },
    )
    watch_after_build(dbt, manifest)
    push_final_node_events_only()
    push_only_what_sensors_read(dbt)

    @task(task_id="gate__features", retries=0)
    def gate_features(run: dict) -> None:
        from recpipe.pipeline import check_features

        with stage(run) as current:
            check_features(current)

    @task(task_id="candidates__python_sources")
    def python_candidates(run: dict, shard: int) -> int:
        from recpipe.pipeline import generate_python_candidates

        with stage(run) as current:
            return generate_python_candidates(current, shard=shard)

    @task(task_id="candidates__python_merge")
    def merge_candidates(run: dict) -> int:
        from recpipe.pipeline import merge_python_candidates

        with stage(run) as current:
            return merge_python_candidates(current)

    @task(task_id="gate__candidates", retries=0)
    def gate_candidates(run: dict) -> None:
        from recpipe.pipeline import check_candidates

        with stage(run) as current:
            check_candidates(current)

    @task(task_id="model__train_or_load")
    def train_or_load(run: dict) -> str:
        from recpipe.pipeline import train_or_load_ranker

        with stage(run) as current:
            return train_or_load_ranker(current)

    @task(task_id="gate__model", retries=0)
    def gate_model(run: dict, model_version: str) -> None:
        from recpipe.pipeline import check_model

        with stage(run) as current:
            check_model(current, model_version)

    @task(task_id="score__rank_candidates")
    def score(run: dict, model_version: str, shard: int) -> int:
        from recpipe.pipeline import score_candidates

        with stage(run) as current:
            return score_candidates(current, model_version, shard=shard)

    @task(task_id="gate__output", retries=0)
    def gate_output(run: dict) -> None:
        from recpipe.pipeline import check_output

        with stage(run) as current:
            check_output(current)

    @task(task_id="publish__recommendations")
    def publish(run: dict) -> int:
        from recpipe.pipeline import publish_recommendations

        with stage(run) as current:
            return publish_recommendations(current)

    @task(task_id="run__record_failure", trigger_rule="one_failed", retries=0)
    def record_failure(run: dict) -> None:
        """Runs only when a stage failed: closes the run as failed and fails the DAG run."""
        from recpipe.airflow_tasks import fail_run

        fail_run(run)

    # What this parse baked in (dbt target, profile, env, vars), checked against the worker's.
    run = resolve_params(settings.parse_time_settings())
    shards = list(range(settings.user_shards))
    version = train_or_load(run)
    published = publish(run)
    chain(
        run,
        gate_raw(run),
        dbt,
        gate_features(run),
        # one mapped task per user shard, like scoring; the merge swaps them all in at once
        python_candidates.partial(run=run).expand(shard=shards),
        merge_candidates(run),
        gate_candidates(run),
        version,
        gate_model(run, version),
        # one mapped task per user shard (RECPIPE_USER_SHARDS), each free to run on any worker
        score.partial(run=run, model_version=version).expand(shard=shards),
        gate_output(run),
        published,
    )
    failure = record_failure(run)
    published >> failure


recpipe_daily()
