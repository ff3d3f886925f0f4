"""Ingest validates the input contract: bad files fail whole, with the rule and row counts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from recpipe.ingest import IngestError, ingest_events, ingest_items, ingest_users
from recpipe.warehouse import DuckDBWarehouse

HEADER = "user_id,item_id,event_type,event_ts,session_id,quantity,price"
GOOD = [
    "u1,i1,view,2026-09-01T10:00:00Z,s1,,9.99",
    "u1,i1,purchase,2026-09-01T10:05:00+02:00,s1,2,9.99",
    "u2,i2,add_to_cart,2026-09-02 11:00:00,,,",
]


@pytest.fixture
def wh(tmp_path):
    warehouse = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    yield warehouse
    warehouse.close()


def write(tmp_path: Path, lines: list[str], name: str = "events.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def count(wh, table: str) -> int:
    if not wh.table_exists("raw", table):
        return 0
    return int(wh.query_df(f"select count(*) as n from raw.{table}")["n"].iloc[0])


def test_good_file_loads_with_utc_timestamps_and_defaults(wh, tmp_path):
    result = ingest_events(wh, write(tmp_path, GOOD))
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 3, 0)
    rows = wh.query_df("select * from raw.events order by event_ts")
    assert rows["event_ts"].tolist() == [
        pd.Timestamp("2026-09-01 08:05:00"),  # +02:00 converted to UTC
        pd.Timestamp("2026-09-01 10:00:00"),
        pd.Timestamp("2026-09-02 11:00:00"),  # no offset: UTC
    ]
    assert rows["quantity"].tolist() == [2, 1, 1]
    assert rows["session_id"].isna().tolist() == [False, False, True]


def test_loading_the_same_file_twice_adds_nothing(wh, tmp_path):
    path = write(tmp_path, GOOD)
    ingest_events(wh, path)
    again = ingest_events(wh, path)
    assert again.rows_loaded == 0 and again.duplicates_skipped == 3
    assert count(wh, "events") == 3


def test_duplicate_events_in_one_file_load_once(wh, tmp_path):
    result = ingest_events(wh, write(tmp_path, [GOOD[0], GOOD[0], GOOD[1]]))
    assert result.rows_loaded == 2 and result.duplicates_skipped == 1


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (",i1,view,2026-09-01T10:00:00Z,s1,,", "user_id is required"),
        ("   ,i1,view,2026-09-01T10:00:00Z,s1,,", "user_id is required"),
        ("u1,,view,2026-09-01T10:00:00Z,s1,,", "item_id is required"),
        ("u1,i1,click,2026-09-01T10:00:00Z,s1,,", "event_type is one of"),
        ("u1,i1,,2026-09-01T10:00:00Z,s1,,", "event_type is one of"),
        ("u1,i1,view,yesterday,s1,,", "event_ts is an ISO-8601 timestamp"),
        ("u1,i1,view,,s1,,", "event_ts is an ISO-8601 timestamp"),
        ("u1,i1,view,2999-01-01T00:00:00Z,s1,,", "event_ts is not in the future"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,0,", "quantity is a number >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,two,", "quantity is a number >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1,-5", "price is a number >= 0"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1,nan", "price is a number >= 0"),
        (f"{'u' * 300},i1,view,2026-09-01T10:00:00Z,s1,,", "user_id is at most 256"),
    ],
)
def test_a_bad_row_fails_the_whole_file_naming_the_rule(wh, tmp_path, line, rule):
    path = write(tmp_path, [*GOOD, line])
    with pytest.raises(IngestError) as err:
        ingest_events(wh, path)
    message = str(err.value)
    assert str(path) in message and rule in message and "1 bad row" in message
    assert "data row(s) 4" in message  # the example points at the broken row
    assert count(wh, "events") == 0  # nothing of the batch is loaded


def test_quarantine_loads_good_rows_and_keeps_bad_ones_with_reason(wh, tmp_path):
    path = write(tmp_path, [*GOOD, "u1,i1,click,2026-09-01T10:00:00Z,s1,,"])
    result = ingest_events(wh, path, quarantine=True)
    assert (result.rows_loaded, result.rows_rejected) == (3, 1)
    rejected = wh.query_df("select * from raw.rejected_events")
    assert rejected["reason"].str.contains("event_type").all()
    assert rejected["row_number"].tolist() == [4]


def test_missing_column_is_named(wh, tmp_path):
    path = write(tmp_path, ["u1,i1,2026-09-01T10:00:00Z"], header="user_id,item_id,event_ts")
    with pytest.raises(IngestError, match="missing required column.*event_type"):
        ingest_events(wh, path)


def test_empty_file_is_an_error(wh, tmp_path):
    with pytest.raises(IngestError, match="no data rows"):
        ingest_events(wh, write(tmp_path, []))


def test_unknown_file_type_and_missing_file(wh, tmp_path):
    with pytest.raises(IngestError, match="unsupported file type"):
        ingest_events(wh, write(tmp_path, GOOD, name="events.txt"))
    with pytest.raises(IngestError, match="file not found"):
        ingest_events(wh, tmp_path / "nope.csv")


def test_sql_like_and_formula_like_ids_are_data(wh, tmp_path):
    nasty = [
        '"x\'); drop table raw.events; --",i1,view,2026-09-01T10:00:00Z,s1,,',
        "=cmd|' /C calc'!A0,i1,view,2026-09-01T10:00:00Z,s1,,",
        "ünï©ødé 🛒,i1,view,2026-09-01T10:00:00Z,s1,,",
    ]
    ingest_events(wh, write(tmp_path, [*GOOD, *nasty]))
    users = set(wh.query_df("select user_id from raw.events")["user_id"])
    assert {"x'); drop table raw.events; --", "=cmd|' /C calc'!A0", "ünï©ødé 🛒"} <= users


def test_parquet_input_gives_the_same_rows_as_csv(wh, tmp_path):
    csv = write(tmp_path, GOOD)
    parquet = tmp_path / "events.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    ingest_events(wh, csv)
    assert ingest_events(wh, parquet).rows_loaded == 0  # same events, same keys


def test_catalog_duplicates_negative_price_and_bad_bool_fail(wh, tmp_path):
    header = "item_id,category,brand,price,is_available"
    for lines, rule in [
        (["i1,a/b,x,1,true", "i1,a/c,y,2,true"], "item_id is unique"),
        (["i1,a/b,x,-1,true"], "price is a number >= 0"),
        (["i1,a/b,x,1,maybe"], "is_available is a boolean"),
    ]:
        with pytest.raises(IngestError, match=rule):
            ingest_items(wh, write(tmp_path, lines, "items.csv", header))
    assert count(wh, "items") == 0


def test_catalog_reload_replaces_rows_by_id(wh, tmp_path):
    header = "item_id,category,brand,price,is_available"
    ingest_items(wh, write(tmp_path, ["i1,a/b,x,1,true", "i2,a/c,y,2,"], "items.csv", header))
    result = ingest_items(wh, write(tmp_path, ["i1,a/b,x,1,false"], "items.csv", header))
    assert result.rows_loaded == 1
    items = wh.query_df("select item_id, is_available from raw.items order by item_id")
    assert items.values.tolist() == [["i1", False], ["i2", True]]  # default available


def test_users_file_rules(wh, tmp_path):
    header = "user_id,signup_ts,segment"
    ingest_users(wh, write(tmp_path, ["u1,2026-01-01T00:00:00Z,vip", "u2,,"], "users.csv", header))
    assert count(wh, "users") == 2
    with pytest.raises(IngestError):
        ingest_users(wh, write(tmp_path, ["u1,,", "u1,,"], "users.csv", header))


def test_future_is_judged_against_the_load_time(wh, tmp_path):
    path = write(tmp_path, ["u1,i1,view,2026-09-01T10:00:00Z,s1,,"])
    with pytest.raises(IngestError, match="future"):
        ingest_events(wh, path, loaded_at=datetime(2026, 8, 1, tzinfo=UTC))
