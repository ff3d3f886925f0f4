"""The CLI's promise: exit 0 on success, otherwise one line naming what broke."""

from __future__ import annotations

import pytest

from recpipe.cli import main


def test_generate_then_ingest_twice_adds_nothing(recpipe_home, tmp_path, capsys):
    shop = tmp_path / "shop"
    assert (
        main(["generate", "--out", str(shop), "--users", "50", "--items", "30", "--days", "10"])
        == 0
    )
    args = [
        "ingest",
        "--events",
        str(shop / "events.csv"),
        "--items",
        str(shop / "items.csv"),
        "--users",
        str(shop / "users.csv"),
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "raw.events: read" in out and "loaded 0," in out


def test_bad_file_exits_non_zero_with_one_line(recpipe_home, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_ts\nu1,i1,2026-01-01\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id\ni1\n")
    assert main(["ingest", "--events", str(events), "--items", str(items)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing required column(s) event_type" in err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--as-of", "2026-13-01"],
        ["run", "--as-of", "2026-10-01", "--param", "k=ten"],
        ["run", "--as-of", "2026-10-01", "--param", "drop=1"],
    ],
)
def test_bad_arguments_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_backfill_with_end_before_start(recpipe_home, capsys):
    assert main(["backfill", "--start", "2026-10-02", "--end", "2026-10-01"]) == 1
    assert "before --start" in capsys.readouterr().err
