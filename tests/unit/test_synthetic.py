"""Tests of the synthetic shop: determinism, the input contract and the shop's structure."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recpipe import synthetic
from recpipe.synthetic import (
    CATEGORY_TREE,
    CONSUMABLE_DEPARTMENTS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    SEGMENTS,
    USER_COLUMNS,
    ShopSummary,
    generate_shop,
)

END = date(2026, 9, 30)
TINY = {"users": 300, "items": 150, "days": 40}
MEDIUM = {"users": 1500, "items": 400, "days": 42}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _shop(out: Path, **kwargs) -> ShopSummary:
    return generate_shop(out, show_progress=False, **kwargs)


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _events(summary: ShopSummary) -> pd.DataFrame:
    events = pd.read_csv(summary.files["events"], dtype={"user_id": str, "item_id": str})
    events["ts"] = pd.to_datetime(events["event_ts"], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    return events


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> ShopSummary:
    return _shop(tmp_path_factory.mktemp("tiny"), **TINY)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> ShopSummary:
    return _shop(tmp_path_factory.mktemp("medium"), **MEDIUM)


@pytest.fixture(scope="module")
def medium_events(medium) -> pd.DataFrame:
    return _events(medium)


# --- Determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(tiny, tmp_path):
    again = _shop(tmp_path / "again", **TINY)
    for key in ("events", "items", "users"):
        assert again.files[key].read_bytes() == tiny.files[key].read_bytes(), key
    assert again.events == tiny.events


def test_different_seed_gives_different_shop(tiny, tmp_path):
    other = _shop(tmp_path / "other", seed=7, **TINY)
    assert other.files["events"].read_bytes() != tiny.files["events"].read_bytes()
    assert other.files["items"].read_bytes() != tiny.files["items"].read_bytes()


def test_parquet_is_deterministic(tmp_path):
    small = {"users": 100, "items": 60, "days": 10, "fmt": "parquet"}
    a, b = _shop(tmp_path / "a", **small), _shop(tmp_path / "b", **small)
    for key in ("events", "items", "users"):
        assert a.files[key].read_bytes() == b.files[key].read_bytes(), key


# --- Contract -------------------------------------------------------------------------------------


def test_summary_and_files(tiny):
    assert tiny.users == TINY["users"] and tiny.items == TINY["items"]
    assert tiny.start_date == END - timedelta(days=TINY["days"] - 1)
    assert tiny.end_date == END
    assert set(tiny.files) == {"events", "items", "users"}
    for key, path in tiny.files.items():
        assert path == tiny.out_dir / f"{key}.csv" and path.exists()
    assert not list(tiny.out_dir.glob("*.tmp"))
    assert tiny.events == len(_read_csv(tiny.files["events"]))
    assert 5_000 <= tiny.events <= 20_000


def test_contract_constants_match_the_ingest_contract():
    tables = pytest.importorskip("recpipe.tables")
    assert EVENT_COLUMNS == tables.EVENT_COLUMNS
    assert ITEM_COLUMNS == tables.ITEM_COLUMNS
    assert USER_COLUMNS == tables.USER_COLUMNS
    assert EVENT_TYPES == tables.EVENT_TYPES


def test_columns_in_contract_order(tiny):
    assert tuple(_read_csv(tiny.files["events"]).columns) == EVENT_COLUMNS
    assert tuple(_read_csv(tiny.files["items"]).columns) == ITEM_COLUMNS
    assert tuple(_read_csv(tiny.files["users"]).columns) == USER_COLUMNS


def test_events_contract(tiny):
    raw = _read_csv(tiny.files["events"])
    for column in ("user_id", "item_id", "session_id"):
        assert (raw[column].str.len() > 0).all(), column
    assert set(raw["event_type"]) == set(EVENT_TYPES)
    assert raw["event_ts"].str.match(TS_RE).all()
    assert raw["price"].str.match(r"^\d+\.\d{2}$").all()  # decimals with two places

    events = _events(tiny)
    start = pd.Timestamp(tiny.start_date, tz="UTC")
    stop = pd.Timestamp(END + timedelta(days=1), tz="UTC")
    assert events["ts"].min() >= start and events["ts"].max() < stop
    assert events["ts"].is_monotonic_increasing
    assert events["quantity"].dtype.kind == "i" and (events["quantity"] >= 1).all()
    assert (events.loc[events["event_type"] == "view", "quantity"] == 1).all()
    assert events["price"].dtype.kind == "f" and (events["price"] >= 0).all()
    # The loader keys events by (user, item, type, time, session): no two may collide.
    key = ["user_id", "item_id", "event_type", "event_ts", "session_id"]
    assert not events.duplicated(key).any()


def test_items_contract(tiny):
    raw = _read_csv(tiny.files["items"])
    assert raw["item_id"].is_unique and (raw["item_id"].str.len() > 0).all()
    assert set(raw["is_available"]) == {"true", "false"}
    assert raw["price"].str.match(r"^\d+\.\d{2}$").all()
    assert (raw["price"].astype(float) >= 0).all()
    assert (raw["brand"].str.len() > 0).all()
    leaves = {
        f"{d}/{s}/{leaf}"
        for d, subs in CATEGORY_TREE.items()
        for s, ls in subs.items()
        for leaf in ls
    }
    assert set(raw["category"]) <= leaves


def test_users_contract(tiny):
    raw = _read_csv(tiny.files["users"])
    assert raw["user_id"].is_unique and (raw["user_id"].str.len() > 0).all()
    assert raw["signup_ts"].str.match(TS_RE).all()
    assert set(raw["segment"]) <= set(SEGMENTS)
    assert set(raw["segment"]) == set(SEGMENTS)


def test_events_reference_catalog_and_users_signed_up(tiny):
    events = _events(tiny)
    items = _read_csv(tiny.files["items"])
    users = _read_csv(tiny.files["users"])
    assert set(events["item_id"]) <= set(items["item_id"])
    assert set(events["user_id"]) <= set(users["user_id"])
    signup = pd.to_datetime(users.set_index("user_id")["signup_ts"], utc=True)
    assert (events["ts"].to_numpy() > signup.loc[events["user_id"]].to_numpy()).all()


def test_category_tree_is_a_real_tree():
    assert len(CATEGORY_TREE) >= 4
    assert CONSUMABLE_DEPARTMENTS < set(CATEGORY_TREE)
    for subs in CATEGORY_TREE.values():
        assert len(subs) >= 2
        assert all(len(leaves) >= 2 for leaves in subs.values())


def test_funnel_steps_follow_a_view_in_the_same_session(medium_events):
    ev = medium_events
    key = ["session_id", "item_id"]
    first = {t: ev[ev["event_type"] == t].groupby(key)["ts"].min() for t in EVENT_TYPES}
    for later, earlier in (("add_to_cart", "view"), ("purchase", "add_to_cart")):
        joined = first[later].to_frame("later").join(first[earlier].rename("earlier"), how="left")
        assert joined["earlier"].notna().all(), later
        assert (joined["earlier"] <= joined["later"]).all(), later


# --- Structure ------------------------------------------------------------------------------------


def test_medium_shop_size(medium):
    # The visiting rate is calibrated to about 0.7 events per user and day.
    per_user_day = medium.events / (MEDIUM["users"] * MEDIUM["days"])
    assert 0.4 < per_user_day < 1.2


def test_popularity_is_heavy_tailed(medium, medium_events):
    counts = medium_events["item_id"].value_counts()
    top = counts.iloc[: medium.items // 10].sum()
    assert top / counts.sum() > 0.4


def test_funnel_ratios(medium_events):
    n = medium_events["event_type"].value_counts()
    assert 0.10 <= n["add_to_cart"] / n["view"] <= 0.25
    assert 0.30 <= n["purchase"] / n["add_to_cart"] <= 0.50


def test_repeat_purchases_of_consumables(medium, medium_events):
    buys = medium_events[medium_events["event_type"] == "purchase"]
    per_pair = buys.groupby(["user_id", "item_id"]).size()
    repeated = per_pair[per_pair >= 2]
    assert len(repeated) >= 50
    items = _read_csv(medium.files["items"]).set_index("item_id")
    department = items.loc[repeated.index.get_level_values("item_id"), "category"].str.split("/")
    consumable = department.str[0].isin(CONSUMABLE_DEPARTMENTS)
    assert consumable.mean() > 0.6  # popular non-consumables get bought twice now and then


def test_sessions_cluster_by_category(medium, medium_events):
    items = _read_csv(medium.files["items"]).set_index("item_id")["category"]
    views = medium_events[medium_events["event_type"] == "view"]
    views = views.sort_values(["session_id", "ts"], kind="stable")
    category = items.loc[views["item_id"]].to_numpy()
    same_session = views["session_id"].to_numpy()[1:] == views["session_id"].to_numpy()[:-1]
    same_leaf = category[1:] == category[:-1]
    assert same_leaf[same_session].mean() > 0.5


def test_unavailable_items_stop_before_the_end(medium, medium_events):
    items = _read_csv(medium.files["items"])
    gone = set(items.loc[items["is_available"] == "false", "item_id"])
    assert 0.02 < len(gone) / len(items) < 0.2
    last_days = medium_events["ts"] >= pd.Timestamp(END - timedelta(days=2), tz="UTC")
    assert not medium_events.loc[last_days, "item_id"].isin(gone).any()


def test_items_launch_mid_period(medium, medium_events):
    first_seen = medium_events.groupby("item_id")["ts"].min()
    late = first_seen >= pd.Timestamp(medium.start_date + timedelta(days=14), tz="UTC")
    assert late.sum() >= 10


def test_weekends_busier_than_weekdays(medium_events):
    per_day = medium_events.groupby(medium_events["ts"].dt.date).size()
    weekend = np.array([d.weekday() >= 5 for d in per_day.index])
    assert per_day[weekend].mean() > 1.1 * per_day[~weekend].mean()


def test_intraday_variation(medium_events):
    per_hour = medium_events["ts"].dt.hour.value_counts()
    assert per_hour.max() > 3 * per_hour.min()


# --- Formats and chunking -------------------------------------------------------------------------


def test_parquet_and_csv_have_the_same_rows(tiny, tmp_path):
    pq_shop = _shop(tmp_path / "pq", fmt="parquet", **TINY)
    assert pq_shop.events == tiny.events
    for key in ("events", "items", "users"):
        assert pq_shop.files[key].suffix == ".parquet"
        from_pq = pd.read_parquet(pq_shop.files[key])
        from_csv = pd.read_csv(tiny.files[key], dtype={c: str for c in ("user_id", "item_id")})
        for column in from_pq.columns:
            if from_pq[column].dtype.kind not in "fbi":
                from_pq[column] = from_pq[column].astype(str)
                from_csv[column] = from_csv[column].astype(str)
        pd.testing.assert_frame_equal(
            from_pq.reset_index(drop=True), from_csv, check_dtype=False, check_exact=False
        )


def test_chunked_writing_does_not_change_output(tmp_path, monkeypatch):
    small = {"users": 200, "items": 80, "days": 30}
    whole = _shop(tmp_path / "whole", **small)
    monkeypatch.setattr(synthetic, "_FLUSH_ROWS", 500)
    chunked = _shop(tmp_path / "chunked", **small)
    assert chunked.files["events"].read_bytes() == whole.files["events"].read_bytes()
    as_parquet = _shop(tmp_path / "pq", fmt="parquet", **small)
    assert pq.ParquetFile(as_parquet.files["events"]).num_row_groups > 1
    assert pq.read_table(as_parquet.files["events"]).num_rows == whole.events


def test_longer_period_works(tmp_path):
    summary = _shop(tmp_path / "long", users=150, items=80, days=200, end_date=date(2025, 1, 5))
    events = _events(summary)
    assert summary.start_date == date(2025, 1, 5) - timedelta(days=199)
    assert summary.end_date == date(2025, 1, 5)
    assert events["ts"].min() >= pd.Timestamp(summary.start_date, tz="UTC")
    assert events["ts"].max() < pd.Timestamp(date(2025, 1, 6), tz="UTC")
    assert events["ts"].is_monotonic_increasing
    assert events["ts"].dt.date.nunique() > 150


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    generate_shop(tmp_path / "p", users=20, items=20, days=3, show_progress=True)
    captured = capsys.readouterr()
    assert "synthetic shop" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 0},
        {"items": 0},
        {"days": 0},
        {"days": -3},
        {"users": 2.5},
        {"fmt": "json"},
        {"end_date": "2026-09-30"},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_shop(tmp_path / "bad", show_progress=False, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_one_day_one_item_shop(tmp_path):
    summary = _shop(tmp_path / "one", users=5, items=1, days=1)
    assert summary.start_date == summary.end_date == END
    assert len(_read_csv(summary.files["items"])) == 1
