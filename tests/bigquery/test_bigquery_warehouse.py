"""BigQueryWarehouse against the local emulator: names, parameters, load jobs, transactions."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from recpipe.tables import PUBLISHED, ensure_tables
from recpipe.warehouse import (
    WORK_TABLE_EXPIRATION_MS,
    BigQueryWarehouse,
    batch_table,
    bigquery_parameter,
)


def test_tables_are_qualified_with_project_and_dataset_prefix(bq_warehouse):
    prefix = bq_warehouse.prefix
    assert bq_warehouse.table("raw", "events") == f"`test-project.{prefix}raw.events`"
    with pytest.raises(ValueError, match="identifier"):
        bq_warehouse.table("raw", "events; drop table x")


def test_parameters_are_typed_and_bound(bq_warehouse):
    assert bigquery_parameter("d", date(2026, 1, 2)).type_ == "DATE"
    assert bigquery_parameter("t", datetime(2026, 1, 2, 3)).type_ == "TIMESTAMP"
    assert bigquery_parameter("b", True).type_ == "BOOL"
    assert bigquery_parameter("n", 3).type_ == "INT64"
    hostile = "x' or '1'='1"
    frame = bq_warehouse.query_df(
        "select @s as s, @n + 1 as n, date_add(@d, interval 1 day) as d, @unused_ok is null as u",
        {"s": hostile, "n": 41, "d": date(2026, 1, 31), "unused_ok": None, "extra": 1},
    )
    assert frame["s"].iloc[0] == hostile
    assert int(frame["n"].iloc[0]) == 42
    assert pd.Timestamp(frame["d"].iloc[0]).date() == date(2026, 2, 1)
    with pytest.raises(KeyError, match="missing"):
        bq_warehouse.query_df("select @missing as m", {})


def test_write_df_is_a_load_job_that_replaces_or_appends(bq_warehouse):
    frame = pd.DataFrame(
        {
            "run_date": [date(2026, 1, 1), date(2026, 1, 2)],
            "user_id": ["u1", "u2"],
            "rank": pd.array([1, 2], dtype="int32"),
            "score": [0.5, 0.25],
            "at": pd.to_datetime(["2026-01-01 10:00:00", "2026-01-02 00:00:00"]),
        }
    )
    bq_warehouse.write_df(frame, "work", "loaded")
    bq_warehouse.write_df(frame.iloc[:1], "work", "loaded")
    table = bq_warehouse.client.get_table(bq_warehouse._table_id("work", "loaded"))
    types = {f.name: f.field_type for f in table.schema}
    assert types == {
        "run_date": "DATE",
        "user_id": "STRING",
        "rank": "INT64",
        "score": "FLOAT64",
        "at": "TIMESTAMP",
    }
    back = bq_warehouse.query_df(f"select * from {bq_warehouse.table('work', 'loaded')}")
    assert len(back) == 1
    assert back["at"].iloc[0] == pd.Timestamp("2026-01-01 10:00:00")  # naive UTC, like DuckDB
    assert bq_warehouse.columns("work", "loaded") == list(frame.columns)
    assert bq_warehouse.table_exists("work", "loaded")
    assert not bq_warehouse.table_exists("work", "nothing_here")
    bq_warehouse.write_df(frame.iloc[1:], "work", "loaded", append=True)
    back = bq_warehouse.query_df(
        f"select user_id from {bq_warehouse.table('work', 'loaded')} order by user_id"
    )
    assert back["user_id"].tolist() == ["u1", "u2"]


def test_published_tables_are_created_partitioned(bq_warehouse):
    ensure_tables(bq_warehouse)
    ensure_tables(bq_warehouse)  # idempotent
    table = bq_warehouse.client.get_table(bq_warehouse._table_id(PUBLISHED, "recommendations"))
    assert table.time_partitioning is not None
    assert table.time_partitioning.field == "run_date"
    # clustering: the emulator accepts `cluster by` but does not report it (real-BigQuery test)
    assert bq_warehouse.table_exists(PUBLISHED, "recommendations_latest")


def test_batches_get_their_own_table_and_the_work_dataset_expires_tables(bq_warehouse):
    rows = pd.DataFrame({"run_id": ["a", "b"]})
    with (
        batch_table(bq_warehouse, rows, "dq_batch") as one,
        batch_table(bq_warehouse, rows, "dq_batch") as other,
    ):
        assert one != other
        found = bq_warehouse.query_df(f"select count(*) as n from {one}")
        assert found["n"].iloc[0] == 2
    names = [t.table_id for t in bq_warehouse.client.list_tables(bq_warehouse.dataset("work"))]
    assert not [name for name in names if name.startswith("dq_batch")]
    work = bq_warehouse.client.get_dataset(f"{bq_warehouse.project}.{bq_warehouse.dataset('work')}")
    assert work.default_table_expiration_ms == WORK_TABLE_EXPIRATION_MS


def test_transaction_commits_together_or_rolls_back(bq_warehouse):
    ensure_tables(bq_warehouse)
    recs = bq_warehouse.table(PUBLISHED, "recommendations")
    insert = (
        f"insert into {recs} (run_date, user_id, rank, item_id, score, model_version, sources) "
        "values (@d, @u, 1, 'i1', 1.0, 'm', 'popularity')"
    )
    day = date(2026, 3, 1)
    with bq_warehouse.transaction():
        bq_warehouse.execute(insert, {"d": day, "u": "u1"})
        bq_warehouse.execute(insert, {"d": day, "u": "u2"})
    with pytest.raises(RuntimeError, match="boom"):
        with bq_warehouse.transaction():
            bq_warehouse.execute(f"delete from {recs} where run_date = @d", {"d": day})
            bq_warehouse.execute(insert, {"d": day, "u": "u3"})
            raise RuntimeError("boom")
    users = bq_warehouse.query_df(
        f"select user_id from {recs} where run_date = @d order by user_id", {"d": day}
    )["user_id"].tolist()
    assert users == ["u1", "u2"]


def test_missing_credentials_are_one_line(monkeypatch, recpipe_home, tmp_path):
    from recpipe.settings import load_settings
    from recpipe.warehouse import WarehouseCredentialsError, connect

    monkeypatch.setenv("RECPIPE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("RECPIPE_BQ_PROJECT", "some-project")
    monkeypatch.delenv("RECPIPE_BQ_API_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    with pytest.raises(WarehouseCredentialsError) as err:
        connect(load_settings())
    assert "\n" not in str(err.value)


def test_a_wrong_key_in_the_airflow_connection_is_one_line_and_not_echoed(
    monkeypatch, recpipe_home
):
    from recpipe.settings import load_settings
    from recpipe.warehouse import WarehouseCredentialsError, connect

    secret = "-----BEGIN PRIVATE KEY-----\\nNOT-A-REAL-KEY-s3cr3t\\n-----END PRIVATE KEY-----\\n"
    keyfile = (
        '{"type": "service_account", "project_id": "p", "private_key_id": "k", '
        f'"private_key": "{secret}", "client_email": "sa@p.iam.gserviceaccount.com", '
        '"token_uri": "https://oauth2.googleapis.com/token"}'
    )
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": keyfile}}),
    )
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("RECPIPE_BQ_PROJECT", "some-project")
    monkeypatch.setenv("RECPIPE_BQ_CREDENTIALS", "airflow")
    monkeypatch.delenv("RECPIPE_BQ_API_ENDPOINT", raising=False)
    with pytest.raises(WarehouseCredentialsError) as err:
        connect(load_settings())
    message = str(err.value)
    assert "\n" not in message
    assert "s3cr3t" not in message and "PRIVATE" not in message
    assert "google_cloud_default" in message


def test_rejected_credentials_are_one_line(bq_emulator):
    """A token BigQuery refuses (here: refresh fails) surfaces as one line, no traceback chain."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import Credentials
    from google.auth.exceptions import RefreshError
    from google.cloud import bigquery

    from recpipe.warehouse import WarehouseCredentialsError

    class Refused(Credentials):
        def refresh(self, request):
            raise RefreshError("invalid_grant: Invalid JWT Signature. token=s3cr3t")

    client = bigquery.Client(
        project="p",
        credentials=Refused(),
        client_options=ClientOptions(api_endpoint=bq_emulator.endpoint),
    )
    wh = BigQueryWarehouse(client, retry_deadline_s=5)
    with pytest.raises(WarehouseCredentialsError) as err:
        wh.query_df("select 1 as x")
    assert "\n" not in str(err.value) and "s3cr3t" not in str(err.value)
    assert err.value.__cause__ is None


class _DeniedClient:
    """A client whose every job is refused the way BigQuery refuses a missing IAM role."""

    project = "p"

    def __init__(self, error):
        self.error = error

    def query(self, *args, **kwargs):
        raise self.error


def test_access_denied_is_one_line_but_quota_errors_stay_themselves():
    from google.api_core.exceptions import Forbidden

    from recpipe.warehouse import WarehouseCredentialsError

    denied = Forbidden(
        "Access Denied: Project p: User does not have bigquery.jobs.create permission.\nmore",
        errors=[{"reason": "accessDenied"}],
    )
    with pytest.raises(WarehouseCredentialsError, match="denied access in project p") as err:
        BigQueryWarehouse(_DeniedClient(denied)).query_df("select 1 as x")
    assert "\n" not in str(err.value)
    quota = Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}])
    with pytest.raises(Forbidden):
        BigQueryWarehouse(_DeniedClient(quota)).query_df("select 1 as x")
