"""Shops that end on any date: ``end_date`` moves the calendar, ``end_weekday`` pins the weekly
cycle so that two shops differing only in their end date are exact time shifts (the demo)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from recpipe.synthetic import DEFAULT_END_DATE, generate_shop

SMALL = {"users": 60, "items": 40, "days": 12, "seed": 5, "show_progress": False}


def _events(summary) -> pd.DataFrame:
    return pd.read_csv(summary.files["events"], dtype=str, keep_default_na=False)


def _shift(frame: pd.DataFrame, column: str, days: int) -> pd.Series:
    moved = pd.to_datetime(frame[column], utc=True) + pd.Timedelta(days=days)
    return moved.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_pinned_weekday_shops_are_time_shifts_of_each_other(tmp_path):
    weekday = DEFAULT_END_DATE.weekday()
    reference = generate_shop(tmp_path / "a", end_weekday=weekday, **SMALL)
    later = date(2027, 1, 14)  # a Thursday: not the reference's weekday, so the pin matters
    assert later.weekday() != weekday
    moved = generate_shop(tmp_path / "b", end_date=later, end_weekday=weekday, **SMALL)
    offset = (later - DEFAULT_END_DATE).days
    assert moved.end_date - reference.end_date == timedelta(days=offset)

    a, b = _events(reference), _events(moved)
    assert len(a) == len(b) > 100
    assert b["event_ts"].tolist() == _shift(a, "event_ts", offset).tolist()
    same = ["user_id", "item_id", "event_type", "quantity", "price"]
    assert b[same].equals(a[same])
    assert b["session_id"].str[10:].tolist() == a["session_id"].str[10:].tolist()
    assert (tmp_path / "a/items.csv").read_bytes() == (tmp_path / "b/items.csv").read_bytes()


def test_default_weekday_follows_the_calendar(tmp_path):
    """Without the pin the weekly cycle is the calendar's: the same shape ending on another
    weekday is a different shop (and the default end date gives the same files as before)."""
    pinned = generate_shop(
        tmp_path / "a", end_date=date(2027, 1, 14), end_weekday=DEFAULT_END_DATE.weekday(), **SMALL
    )
    calendar = generate_shop(tmp_path / "b", end_date=date(2027, 1, 14), **SMALL)
    assert _events(pinned)["event_ts"].tolist() != _events(calendar)["event_ts"].tolist()
    default = generate_shop(tmp_path / "c", **SMALL)
    explicit = generate_shop(tmp_path / "d", end_weekday=DEFAULT_END_DATE.weekday(), **SMALL)
    assert default.files["events"].read_bytes() == explicit.files["events"].read_bytes()


@pytest.mark.parametrize("bad", [7, -1, True, "2"])
def test_bad_end_weekday_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="end_weekday must be 0"):
        generate_shop(tmp_path / "x", end_weekday=bad, **SMALL)


def test_recpipe_generate_takes_an_end_date(recpipe_home, tmp_path, capsys):
    from recpipe.cli import main

    argv = ["generate", "--out", str(tmp_path / "s"), "--users", "20", "--items", "10"]
    assert main([*argv, "--days", "3", "--end-date", "2017-06-29"]) == 0
    assert "(2017-06-27 .. 2017-06-29)" in capsys.readouterr().out
    events = pd.read_csv(tmp_path / "s" / "events.csv")
    assert events["event_ts"].max().startswith("2017-06-29")
