"""Deploying into an existing Airflow: the manifest is built by an explicit step (the DAG file
only requires it), dbt's profile follows RECPIPE_BQ_CREDENTIALS, and a worker whose RECPIPE_*
settings differ from the DAG's parse fails the run's first task with one line."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from recpipe.dbt_cli import run_dbt
from recpipe.dbt_manifest import (
    BUILD_STEP,
    ManifestError,
    manifest_is_current,
    require_manifest,
    sources_digest,
)
from recpipe.settings import DBT_PROJECT_DIR, DEFAULT_DBT_THREADS, load_settings, settings_mismatch
from recpipe.warehouse import session


@pytest.fixture
def project(tmp_path):
    """A copy of the dbt project's sources (no target folder)."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def _fake_manifest(path, digest):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {"recpipe_sources_sha256": digest}, "nodes": {}}))
    return path


def test_a_missing_manifest_is_one_line_naming_the_build_step(project, tmp_path):
    missing = tmp_path / "nowhere" / "manifest.json"
    with pytest.raises(ManifestError) as err:
        require_manifest(missing, project)
    message = str(err.value)
    assert "\n" not in message
    assert str(missing) in message and f"`{BUILD_STEP}`" in message
    assert not missing.exists()  # requiring never builds


def test_a_manifest_of_other_dbt_sources_is_stale(project, tmp_path):
    manifest = _fake_manifest(tmp_path / "manifest.json", sources_digest(project))
    assert require_manifest(manifest, project) == manifest
    assert manifest_is_current(manifest, project)

    model = next((project / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- edited\n")
    assert not manifest_is_current(manifest, project)
    with pytest.raises(ManifestError, match="other dbt sources.*recpipe manifest"):
        require_manifest(manifest, project)


def test_the_manifest_location_is_a_setting(monkeypatch, tmp_path):
    assert load_settings().dbt_manifest == DBT_PROJECT_DIR / "target" / "manifest.json"
    monkeypatch.setenv("RECPIPE_DBT_MANIFEST", str(tmp_path / "m.json"))
    assert load_settings().dbt_manifest == tmp_path / "m.json"


def test_the_dag_file_never_runs_dbt():
    from recpipe.settings import DAGS_DIR

    source = (DAGS_DIR / "recpipe_daily.py").read_text()
    assert "require_manifest(" in source
    assert "ensure_manifest" not in source and "build_manifest" not in source


def test_dbt_profile_follows_the_credentials_setting(recpipe_home, monkeypatch):
    from recpipe.dbt_profile import AirflowConnectionProfileMapping, profile_config

    monkeypatch.setenv("RECPIPE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("RECPIPE_BQ_PROJECT", "shop-reco")
    adc = profile_config(load_settings())
    assert adc.profile_mapping is None
    assert adc.profiles_yml_filepath == DBT_PROJECT_DIR / "profiles.yml"
    assert adc.target_name == "bigquery"

    monkeypatch.setenv("RECPIPE_BQ_CREDENTIALS", "airflow")
    from_airflow = profile_config(load_settings())
    mapping = from_airflow.profile_mapping
    assert isinstance(mapping, AirflowConnectionProfileMapping)
    assert mapping.conn_id == "google_cloud_default"  # the Python stages' connection
    assert mapping.profile_args["project"] == "shop-reco"
    assert mapping.profile_args["dataset"] == "analytics"
    assert mapping.profile_args["maximum_bytes_billed"] == 50_000_000_000
    assert mapping._chosen is None  # nothing read at parse time

    monkeypatch.setenv("RECPIPE_WAREHOUSE", "duckdb")
    assert profile_config(load_settings()).profile_mapping is None


def test_same_settings_are_no_mismatch(recpipe_home):
    settings = load_settings()
    assert settings_mismatch(settings.parse_time_settings(), settings) is None


def test_a_dag_parsed_for_duckdb_on_a_bigquery_worker_is_one_line(recpipe_home):
    parsed = load_settings().parse_time_settings()
    worker = replace(load_settings(), warehouse="bigquery", label_days=14, user_shards=4)
    message = settings_mismatch(parsed, worker)
    assert message is not None and "\n" not in message
    assert "RECPIPE_WAREHOUSE parsed 'duckdb', here 'bigquery'" in message
    assert "RECPIPE_LABEL_DAYS parsed '7', here '14'" in message
    assert "RECPIPE_USER_SHARDS parsed '1', here '4'" in message  # shards the DAG maps over
    assert "dag-processor, scheduler and workers" in message


def test_first_task_fails_on_a_mismatch_before_writing_anything(recpipe_home, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from recpipe.airflow_tasks import begin

    parsed = load_settings().parse_time_settings()
    monkeypatch.setenv("RECPIPE_ACTIVE_DAYS", "30")
    with pytest.raises(AirflowFailException, match="RECPIPE_ACTIVE_DAYS parsed '90', here '30'"):
        begin({"as_of": "2026-03-01"}, None, None, "manual__x", parsed_with=parsed)
    assert not recpipe_home.exists()  # no warehouse opened, no run recorded


@pytest.mark.parametrize("value", ["0", "-2"])
def test_user_shards_below_one_are_refused(recpipe_home, monkeypatch, value):
    monkeypatch.setenv("RECPIPE_USER_SHARDS", value)
    with pytest.raises(ValueError, match=f"RECPIPE_USER_SHARDS must be at least 1, got {value}"):
        load_settings()


def test_discovery_slots_are_off_by_default_and_never_negative(recpipe_home, monkeypatch):
    assert load_settings().discovery_slots == 0
    monkeypatch.setenv("RECPIPE_DISCOVERY_SLOTS", "2")
    assert load_settings().discovery_slots == 2
    monkeypatch.setenv("RECPIPE_DISCOVERY_SLOTS", "-1")
    with pytest.raises(ValueError, match="RECPIPE_DISCOVERY_SLOTS must be 0 or more, got -1"):
        load_settings()


def test_one_duckdb_memory_limit_for_recpipe_and_dbt(recpipe_home, monkeypatch, tmp_path):
    """RECPIPE_DUCKDB_MEMORY_LIMIT reaches recpipe's connections and dbt's profile alike (DuckDB
    would otherwise take up to 80 % of RAM), and a second connection in the process still opens."""
    monkeypatch.setenv("RECPIPE_DUCKDB_MEMORY_LIMIT", "512MiB")
    settings = load_settings()
    with session(settings) as wh, session(settings) as again:
        assert wh.query_df("select current_setting('memory_limit') as m")["m"][0] == "512.0 MiB"
        assert again.query_df("select 1 as one")["one"][0] == 1
    shown = run_dbt(
        "show",
        settings,
        as_of="2026-03-01",
        work_dir=tmp_path / "dbt",
        extra_args=("--inline", "select current_setting('memory_limit') as m", "--output", "json"),
    )
    assert "512.0 MiB" in shown.stdout


@pytest.mark.parametrize("value", ["lots", "3", "-1GB"])
def test_a_memory_limit_that_is_no_amount_is_refused(recpipe_home, monkeypatch, value):
    monkeypatch.setenv("RECPIPE_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ValueError, match="RECPIPE_DUCKDB_MEMORY_LIMIT must be an amount"):
        load_settings()


@pytest.mark.parametrize(("target", "endpoint"), [("bigquery", None), ("bigquery_emulator", "x")])
def test_both_ways_to_the_bigquery_profile_agree(recpipe_home, target, endpoint):
    """profiles.yml (Application Default Credentials) and the profile cosmos builds from the
    Airflow connection set the same target fields: production BigQuery runs 4 threads of jobs,
    the emulator (one DuckDB connection behind every session) one."""
    import yaml

    from recpipe.dbt_profile import bigquery_profile_args

    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    written = profile["recpipe"]["outputs"][target]
    built = bigquery_profile_args(replace(load_settings(), bq_api_endpoint=endpoint))
    for field in ("dataset", "threads", "job_retries"):
        assert written[field] == built[field], field
    assert written["threads"] == (1 if endpoint else 4)


def test_dbt_threads_on_duckdb_come_from_the_setting(recpipe_home, monkeypatch, tmp_path):
    monkeypatch.setenv("RECPIPE_DBT_THREADS", "3")
    settings = load_settings()
    assert settings.dbt_env()["RECPIPE_DBT_THREADS"] == "3"
    with session(settings):  # creates the warehouse file dbt opens
        pass
    done = run_dbt(
        "compile",
        settings,
        as_of="2026-03-01",
        work_dir=tmp_path / "dbt",
        extra_args=("--select", "int_cutoffs"),
    )
    assert "Concurrency: 3 threads (target='duckdb')" in done.stdout
    # dbt run on its own (no recpipe settings in its env) falls back to the same default
    fallback = f"env_var('RECPIPE_DBT_THREADS', '{DEFAULT_DBT_THREADS}')"
    assert fallback in (DBT_PROJECT_DIR / "profiles.yml").read_text()
