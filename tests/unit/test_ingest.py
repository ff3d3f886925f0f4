"""Ingest validates the input contract: bad files fail whole, with the rule and row counts."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from recpipe.ingest import IngestError, ingest_events, ingest_files, ingest_items, ingest_users
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
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,0,", "quantity is an integer >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,two,", "quantity is an integer >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,-3,", "quantity is an integer >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,2.5,", "quantity is an integer >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1e3,", "quantity is an integer >= 1"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1,abc", "price is a number >= 0"),
        ('"u\x001",i1,view,2026-09-01T10:00:00Z,s1,,', "user_id has no control characters"),
        ('u1,"i\n1",view,2026-09-01T10:00:00Z,s1,,', "item_id has no control characters"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1,-5", "price is a number >= 0"),
        ("u1,i1,purchase,2026-09-01T10:00:00Z,s1,1,nan", "price is a number >= 0"),
        (f"{'u' * 300},i1,view,2026-09-01T10:00:00Z,s1,,", "user_id is at most 256"),
    ],
)
def test_a_bad_row_fails_the_whole_file_naming_the_rule(wh, tmp_path, line, rule):
    ingest_events(wh, write(tmp_path, ["u9,i9,view,2026-08-01T00:00:00Z,,,"], "earlier.csv"))
    path = write(tmp_path, [*GOOD, line])
    with pytest.raises(IngestError) as err:
        ingest_events(wh, path)
    message = str(err.value)
    assert str(path) in message and rule in message and "1 bad row" in message
    assert "data row(s) 4" in message  # the example points at the broken row
    assert count(wh, "events") == 1  # nothing of the batch is loaded, nothing earlier lost


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


def test_wrongly_typed_parquet_columns_fail_and_typed_ones_load(wh, tmp_path):
    typed = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "event_type": ["view", "purchase"],
            "event_ts": pd.to_datetime(["2026-09-01 10:00", "2026-09-02 11:00"], utc=True),
            "quantity": [1, 2],
            "price": [1.5, 0.0],
        }
    )
    typed.to_parquet(tmp_path / "typed.parquet")
    assert ingest_events(wh, tmp_path / "typed.parquet").rows_loaded == 2

    epoch = typed.assign(event_ts=[1_788_000_000, 1_788_100_000])  # seconds, not timestamps
    epoch.to_parquet(tmp_path / "epoch.parquet")
    with pytest.raises(IngestError, match="2 bad row.*event_ts is an ISO-8601 timestamp"):
        ingest_events(wh, tmp_path / "epoch.parquet")
    fractional = typed.assign(quantity=[1.0, 2.5])
    fractional.to_parquet(tmp_path / "fractional.parquet")
    with pytest.raises(IngestError, match="quantity is an integer"):
        ingest_events(wh, tmp_path / "fractional.parquet")
    assert count(wh, "events") == 2  # only the good file


def test_malformed_files_are_clear_errors(wh, tmp_path):
    ragged = write(tmp_path, [GOOD[0] + ",extra,fields,here", GOOD[1]], name="ragged.csv")
    with pytest.raises(IngestError, match=r"ragged.csv: line 2: ragged row: 10 field"):
        ingest_events(wh, ragged)
    garbage = tmp_path / "events.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet" * 10)
    with pytest.raises(IngestError, match=r"events.parquet: cannot be read as parquet"):
        ingest_events(wh, garbage)
    header_only = write(tmp_path, [], name="header_only.csv")
    with pytest.raises(IngestError, match="no data rows"):
        ingest_events(wh, header_only)
    assert count(wh, "events") == 0


def test_odd_unicode_ids_are_kept_exactly(wh, tmp_path):
    odd = [
        "caf\u00e9",  # NFC
        "cafe\u0301",  # NFD: looks the same, is a different id
        "\u05e9\u05dc\u05d5\u05dd",  # right-to-left
        "a\u200db",  # zero-width joiner
        "\U0001f6d2\U0001f9fe",  # emoji outside the BMP
        "  padded  ",  # surrounding spaces are trimmed, inner text kept
    ]
    lines = [f"{u},i1,view,2026-09-01T10:00:00Z,s1,," for u in odd]
    path = tmp_path / "events.csv"
    # a UTF-8 byte order mark, as spreadsheet exports write, must not hide the first column
    path.write_text("\ufeff" + "\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    assert ingest_events(wh, path).rows_loaded == len(odd)
    users = set(wh.query_df("select user_id from raw.events")["user_id"])
    assert users == {*odd[:-1], "padded"}


def test_huge_free_text_loads_but_huge_ids_do_not(wh, tmp_path):
    header = "item_id,category,brand,price,is_available"
    long_text = "x" * 100_000
    ingest_items(wh, write(tmp_path, [f"i1,{long_text},{long_text},1,true"], "items.csv", header))
    assert wh.query_df("select length(category) as n from raw.items")["n"].iloc[0] == 100_000
    with pytest.raises(IngestError, match="item_id is at most 256"):
        ingest_items(wh, write(tmp_path, [f"{'i' * 257},a,b,1,true"], "items.csv", header))


def test_catalog_quarantine_keeps_bad_rows_with_reason(wh, tmp_path):
    header = "item_id,category,brand,price,is_available"
    lines = ["i1,a,x,1,true", "i2,a,x,-4,true", "i3,a,x,2,sometimes"]
    result = ingest_items(wh, write(tmp_path, lines, "items.csv", header), quarantine=True)
    assert (result.rows_loaded, result.rows_rejected) == (1, 2)
    rejected = wh.query_df("select item_id, reason from raw.rejected_items order by item_id")
    assert rejected["item_id"].tolist() == ["i2", "i3"]
    assert rejected["reason"].str.contains("price|is_available").all()
    assert wh.query_df("select item_id from raw.items")["item_id"].tolist() == ["i1"]


# --- issue 13: exact values, one transaction per command, idempotent quarantine, event
# identity, reasons that name the line and the cause -------------------------------------------

ITEMS_HEADER = "item_id,category,brand,price,is_available"
USERS_HEADER = "user_id,signup_ts,segment"


def event_with(quantity="", price="", ts="2026-09-01T10:00:00Z", user="u1", session="s1"):
    return f"{user},i1,purchase,{ts},{session},{quantity},{price}"


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        # 1. a value that cannot be stored as given breaks a rule (no cast, no default)
        (event_with(quantity="3000000000"), "quantity is an integer >= 1 and <= 2147483647"),
        (event_with(quantity="2147483648"), "quantity is an integer >= 1 and <= 2147483647"),
        (event_with(price="-0.00001"), "price is a number >= 0"),
        (event_with(price="-1e-300"), "price is a number >= 0"),
        (event_with(price="inf"), "price is a number >= 0"),
        (event_with(price="1e400"), "price is a number >= 0"),
        (event_with(price="0x10"), "price is a number >= 0"),
        (event_with(price="1_000"), "price is a number >= 0"),
        (event_with(price="0.12345678901234567891"), "price is stored exactly as a double"),
        (event_with(price="1e-400"), "price is stored exactly as a double"),
        (event_with(ts="-infinity"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="infinity"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="epoch"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="26-09-15T10:00:00Z"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-09-15T10:00:00+25:00"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-09-15T24:00:00Z"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-09-15T23:59:60Z"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-02-30T10:00:00Z"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-09-15T10:00:00.1234567Z"), "event_ts is an ISO-8601 timestamp"),
        (event_with(ts="2026-09-15 10:00:00 UTC"), "event_ts is an ISO-8601 timestamp"),
        # 5. NEL and the other Unicode controls and line separators break the id rule
        (event_with(user="u\u00851"), "user_id has no control characters"),
        (event_with(user="u\u00801"), "user_id has no control characters"),
        (event_with(user="u\u20281"), "user_id has no control characters"),
        (event_with(user="u\u20291"), "user_id has no control characters"),
        (event_with(session="s\u00851"), "session_id has no control characters"),
    ],
)
def test_a_value_that_cannot_be_stored_exactly_fails_the_file(wh, tmp_path, line, rule):
    path = write(tmp_path, [*GOOD, line])
    with pytest.raises(IngestError) as err:
        ingest_events(wh, path)
    message = str(err.value)
    assert rule in message and "1 bad row" in message, message
    assert "data row(s) 4 (line(s) 5)" in message
    assert count(wh, "events") == 0


def test_extreme_but_exact_values_load_as_given(wh, tmp_path):
    lines = [
        event_with(quantity="2147483647", price="1e15", ts="2026-09-01T10:00:00.123456Z"),
        event_with(quantity="+7", price="0.1", ts="2026-09-01T10:00:01.500000000+14:00"),
        event_with(quantity="", price="123456789012345", ts="2026-09-01 10:00:02-12:00"),
        event_with(quantity="1", price="1.50e2", ts="2026-09-01T10:00:03+0530"),
        event_with(quantity="3", price="0", ts="2026-09-01"),
    ]
    assert ingest_events(wh, write(tmp_path, lines)).rows_loaded == 5
    rows = wh.query_df("select quantity, price, event_ts from raw.events order by price")
    assert rows["quantity"].tolist() == [3, 7, 1, 1, 2147483647]
    assert rows["price"].tolist() == [0.0, 0.1, 150.0, 123456789012345.0, 1e15]
    assert sorted(rows["event_ts"]) == [
        pd.Timestamp("2026-08-31 20:00:01.5"),  # +14:00
        pd.Timestamp("2026-09-01 00:00:00"),  # a date alone: midnight UTC
        pd.Timestamp("2026-09-01 04:30:03"),  # +0530
        pd.Timestamp("2026-09-01 10:00:00.123456"),  # microseconds kept
        pd.Timestamp("2026-09-01 22:00:02"),  # -12:00
    ]


@pytest.mark.parametrize(
    ("lines", "rule"),
    [
        (["i1,a,b,-0.00001,true"], "price is a number >= 0"),
        (["i1,a,b,1.00000000000000000001,true"], "price is stored exactly"),
        (["i1,a,b,1,on"], "is_available is a boolean"),
        (["i\u0085,a,b,1,true"], "item_id has no control characters"),
    ],
)
def test_catalog_values_are_exact_too(wh, tmp_path, lines, rule):
    with pytest.raises(IngestError, match=rule):
        ingest_items(wh, write(tmp_path, lines, "items.csv", ITEMS_HEADER))
    ingest_items(wh, write(tmp_path, ["i1,a,b,1e15,yes"], "items.csv", ITEMS_HEADER))
    items = wh.query_df("select price, is_available from raw.items")
    assert items.values.tolist() == [[1e15, True]]


@pytest.mark.parametrize(
    ("signup", "ok"),
    [
        ("2026-01-01T00:00:00Z", True),
        ("2026-01-01", True),
        ("epoch", False),
        ("-infinity", False),
        ("26-01-01", False),
        ("2026-01-01T00:00:00+25:00", False),
    ],
)
def test_users_signup_ts_is_strict_iso_8601_and_the_error_names_the_rule(wh, tmp_path, signup, ok):
    path = write(tmp_path, [f"u1,{signup},vip", "u2,,"], "users.csv", USERS_HEADER)
    if ok:
        assert ingest_users(wh, path).rows_loaded == 2
        return
    with pytest.raises(IngestError, match=r"signup_ts is an ISO-8601 timestamp.*data row\(s\) 1"):
        ingest_users(wh, path, quarantine=True)  # no rejects table for users: all or nothing
    assert count(wh, "users") == 0


def test_one_command_is_one_transaction_over_all_its_files(wh, tmp_path):
    items = write(tmp_path, ["i1,a,x,1,true", "i2,a,y,2,true"], "items.csv", ITEMS_HEADER)
    events = write(tmp_path, GOOD)
    ingest_files(lambda: nullcontext(wh), items=items, events=events)
    before = wh.query_df("select * from raw.items order by item_id")

    new_items = write(tmp_path, ["i1,b,z,5,false", "i3,c,z,3,true"], "items2.csv", ITEMS_HEADER)
    users = write(tmp_path, ["u7,,"], "users.csv", USERS_HEADER)
    bad_events = write(tmp_path, [*GOOD, event_with(quantity="0")], "bad.csv")
    with pytest.raises(IngestError, match=r"bad.csv: 1 bad row"):
        ingest_files(lambda: nullcontext(wh), items=new_items, users=users, events=bad_events)
    assert wh.query_df("select * from raw.items order by item_id").equals(before)
    assert count(wh, "users") == 0 and count(wh, "events") == 3

    # a failure inside the write (after the items' rows were replaced) rolls everything back
    conflicting = write(tmp_path, [event_with(quantity="2")], "conflict.csv")
    ingest_events(wh, write(tmp_path, [event_with(quantity="1")], "first.csv"))
    with pytest.raises(IngestError, match="already loaded with a different quantity or price"):
        ingest_files(lambda: nullcontext(wh), items=new_items, users=users, events=conflicting)
    assert wh.query_df("select * from raw.items order by item_id").equals(before)
    assert count(wh, "users") == 0 and count(wh, "events") == 4


def test_quarantine_twice_adds_nothing_anywhere(wh, tmp_path):
    events = write(tmp_path, [*GOOD, "u1,i1,click,2026-09-01T10:00:00Z,s1,,"])
    items = write(tmp_path, ["i1,a,x,1,true", "i2,a,x,-4,true"], "items.csv", ITEMS_HEADER)
    tables = ("events", "rejected_events", "items", "rejected_items")
    first = ingest_files(lambda: nullcontext(wh), items=items, events=events, quarantine=True)
    counts = {t: count(wh, t) for t in tables}
    snapshot = {t: wh.query_df(f"select * from raw.{t}") for t in tables}
    assert counts == {"events": 3, "rejected_events": 1, "items": 1, "rejected_items": 1}
    again = ingest_files(lambda: nullcontext(wh), items=items, events=events, quarantine=True)
    assert {t: count(wh, t) for t in tables} == counts
    for t in tables:  # not even loaded_at moves
        assert wh.query_df(f"select * from raw.{t}").equals(snapshot[t]), t
    assert [r.rows_loaded for r in first] == [1, 3]
    assert [r.rows_loaded for r in again] == [0, 0]


def test_rows_differing_only_in_quantity_or_price_are_reported_never_dropped(wh, tmp_path):
    exact = event_with(quantity="2", price="1.5")
    # an exact duplicate (also in another notation: 1.50, +2) is one event, loaded once
    same = event_with(quantity="+2", price="1.50")
    result = ingest_events(wh, write(tmp_path, [exact, same]))
    assert (result.rows_loaded, result.duplicates_skipped) == (1, 1)

    for other in (event_with(quantity="3", price="1.5"), event_with(quantity="2", price="9")):
        # in one file: both rows of the group are reported (which one is right is unknown)
        path = write(tmp_path, [event_with(user="u2", quantity="2"), other.replace("u1", "u2")])
        with pytest.raises(IngestError, match=r"2 bad row.*different quantity or price"):
            ingest_events(wh, path)
        # against an event already loaded
        with pytest.raises(IngestError, match=r"already loaded with a different quantity"):
            ingest_events(wh, write(tmp_path, [other], "later.csv"))
    assert count(wh, "events") == 1

    # with --quarantine the conflicting rows are kept in raw.rejected_events with the reason
    later = write(tmp_path, [event_with(quantity="3", price="1.5"), GOOD[2]], "later.csv")
    result = ingest_events(wh, later, quarantine=True)
    assert (result.rows_loaded, result.rows_rejected) == (1, 1)
    rejected = wh.query_df("select quantity, reason from raw.rejected_events")
    assert rejected["quantity"].tolist() == ["3"]
    assert "already loaded" in rejected["reason"].iloc[0]
    assert ingest_events(wh, later, quarantine=True).rows_loaded == 0
    assert count(wh, "rejected_events") == 1
    assert wh.query_df("select quantity from raw.events where user_id = 'u1'").values.tolist() == [
        [2]
    ]


def test_unreadable_files_name_the_line_and_the_real_cause(wh, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "\n".join([HEADER, GOOD[0], "caf\xe9,i1,view,2026-09-01T10:00:00Z,s1,,", GOOD[1]]).encode(
            "latin-1"
        )
    )
    huge = write(tmp_path, [GOOD[0], event_with(session="x" * 3_000_000)], "huge.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    ragged_last = write(tmp_path, [GOOD[0], GOOD[1], "u000003,i00003"], "ragged_last.csv")
    cases = [
        (latin, r"latin.csv: line 3: not UTF-8"),
        (huge, r"huge.csv: line 3: the line is too long: Maximum line size"),
        (empty, r"empty.csv: the file is empty \(0 bytes"),
        (ragged_last, r"ragged_last.csv: line 4: ragged row: 2 field\(s\) where the header has 7"),
    ]
    for path, expected in cases:
        with pytest.raises(IngestError, match=expected) as err:
            ingest_events(wh, path)
        assert GOOD[0] not in str(err.value)  # no innocent row quoted as if it were the culprit
    assert count(wh, "events") == 0


def test_cli_ingest_with_a_missing_file_creates_nothing(tmp_path, monkeypatch, capsys):
    from recpipe.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("RECPIPE_HOME", str(home))
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "duckdb")
    items = write(tmp_path, ["i1,a,x,1,true"], "items.csv", ITEMS_HEADER)
    assert main(["ingest", "--items", str(items), "--events", str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv: file not found" in capsys.readouterr().err
    assert not home.exists()  # no warehouse file, no tables
    assert main(["ingest", "--items", str(items), "--events", str(write(tmp_path, GOOD))]) == 0
    assert (home / "warehouse.duckdb").exists()
