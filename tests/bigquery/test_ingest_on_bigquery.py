"""Ingest on BigQuery (the local emulator): the same guarantees as on DuckDB — exact values,
one transaction per command, idempotent reloads including quarantine (issue 13)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from recpipe.ingest import IngestError, ingest_files
from recpipe.warehouse import LossyLoadError, _bigquery_schema

EVENTS = "user_id,item_id,event_type,event_ts,session_id,quantity,price"
ITEMS = "item_id,category,brand,price,is_available"


def write(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def rows(wh, table: str) -> pd.DataFrame:
    if not wh.table_exists("raw", table):
        return pd.DataFrame()
    return wh.query_df(f"select * from {wh.table('raw', table)}")


def test_ingest_on_bigquery_is_exact_atomic_and_idempotent(bq_warehouse, tmp_path):
    items = write(tmp_path / "items.csv", ITEMS, ["i1,a,x,1e15,true", "i2,a,x,-4,true"])
    events = write(
        tmp_path / "events.csv",
        EVENTS,
        [
            "u1,i1,purchase,2026-09-01T10:00:00.123456Z,s1,2147483647,0.1",
            "u1,i1,view,2026-09-01T10:00:01+14:00,s1,,",
            "u1,i1,click,2026-09-01T10:00:00Z,s1,,",
        ],
    )
    open_wh = lambda: nullcontext(bq_warehouse)  # noqa: E731

    # one command, one transaction: the bad events file leaves the catalog untouched
    with pytest.raises(IngestError, match="events.csv: 1 bad row.*event_type"):
        ingest_files(
            open_wh, items=write(tmp_path / "ok.csv", ITEMS, ["i9,a,x,1,true"]), events=events
        )
    assert rows(bq_warehouse, "items").empty

    ingest_files(open_wh, items=items, events=events, quarantine=True)
    snapshot = {
        t: rows(bq_warehouse, t) for t in ("events", "rejected_events", "items", "rejected_items")
    }
    assert {t: len(f) for t, f in snapshot.items()} == {
        "events": 2,
        "rejected_events": 1,
        "items": 1,
        "rejected_items": 1,
    }
    loaded = snapshot["events"].sort_values("event_ts")
    assert loaded["quantity"].tolist() == [1, 2147483647]
    assert loaded["price"].isna().tolist() == [True, False]
    assert loaded["price"].iloc[1] == 0.1
    assert loaded["event_ts"].tolist() == [
        pd.Timestamp("2026-08-31 20:00:01"),
        pd.Timestamp("2026-09-01 10:00:00.123456"),
    ]
    assert snapshot["items"]["price"].tolist() == [1e15]

    again = ingest_files(open_wh, items=items, events=events, quarantine=True)
    assert [r.rows_loaded for r in again] == [0, 0]
    for table, before in snapshot.items():
        after = rows(bq_warehouse, table)
        assert len(after) == len(before), table
        key = after.columns[0]
        assert (
            after.sort_values(key)
            .reset_index(drop=True)
            .equals(before.sort_values(key).reset_index(drop=True))
        ), table


def test_the_load_job_refuses_values_bigquery_would_change():
    nanos = pa.table({"t": pa.array([1_000_000_000_000_000_001], pa.timestamp("ns"))})
    with pytest.raises(LossyLoadError, match="finer than a microsecond"):
        _bigquery_schema(nanos)
    micros = pa.table({"t": pa.array([1_000_000_000_000_001_000], pa.timestamp("ns"))})
    table, fields = _bigquery_schema(micros)
    assert table.column("t").type == pa.timestamp("us", tz="UTC")
    assert (
        table.column("t")[0].value == 1_000_000_000_000_001 and fields[0].field_type == "TIMESTAMP"
    )

    with pytest.raises(LossyLoadError, match="INT64"):
        _bigquery_schema(pa.table({"n": pa.array([2**63], pa.uint64())}))
    assert (
        _bigquery_schema(pa.table({"n": pa.array([2**63 - 1], pa.uint64())}))[1][0].field_type
        == "INT64"
    )

    import decimal

    wide = pa.table({"d": pa.array([decimal.Decimal("1.0000000001")], pa.decimal128(20, 10))})
    assert _bigquery_schema(wide)[1][0].field_type == "BIGNUMERIC"  # NUMERIC keeps 9 decimals
    narrow = pa.table({"d": pa.array([decimal.Decimal("1.5")], pa.decimal128(10, 2))})
    assert _bigquery_schema(narrow)[1][0].field_type == "NUMERIC"
    beyond = pa.table({"d": pa.array([decimal.Decimal("1")], pa.decimal256(76, 0))})
    with pytest.raises(LossyLoadError, match="BIGNUMERIC"):
        _bigquery_schema(beyond)
