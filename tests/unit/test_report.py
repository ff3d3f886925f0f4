"""recpipe.report on a real DuckDB file: read only (never the writer lock, never a table
created), empty values blank, counts as integers, statuses in colour, date axes on the data."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pandas as pd
import pytest

from recpipe.cli import main
from recpipe.report import (
    WarehouseNotReadyError,
    collect,
    date_axis,
    display_frame,
    read_only_session,
    render_page,
    write_report,
)
from recpipe.settings import load_settings
from recpipe.tables import ensure_tables
from recpipe.warehouse import WarehouseBusyError, session
from tests.report_rows import DATES, check_report_data, seed_report_rows


def test_no_warehouse_yet_is_a_clear_error_and_creates_nothing(recpipe_home, tmp_path, capsys):
    with pytest.raises(WarehouseNotReadyError, match="no warehouse"):
        with read_only_session(load_settings()):
            pass
    out = tmp_path / "r.html"
    assert main(["report", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no warehouse at" in err[0]
    assert not out.exists() and not load_settings().duckdb_path.exists()


def test_report_creates_no_table(recpipe_home, tmp_path):
    settings = load_settings()
    with session(settings) as wh:  # a warehouse with raw tables only: nothing run yet
        wh.execute("create schema if not exists raw")
        wh.execute("create table raw.items (item_id varchar)")
    page = write_report(settings, tmp_path / "r.html").read_text()
    assert page.count("nothing yet") >= 3 and "no model trained yet" in page
    with session(settings) as wh:
        schemas = wh.query_df("select distinct schema_name from information_schema.schemata")
    assert "recpipe" not in set(schemas["schema_name"])


def test_empty_warehouse_renders_every_section_as_empty(recpipe_home, tmp_path):
    with session(load_settings()) as wh:
        ensure_tables(wh)
    page = write_report(load_settings(), tmp_path / "r.html").read_text()
    assert page.count("nothing yet") >= 3 and "no model trained yet" in page


def test_page_shows_runs_gates_metrics_and_recall_read_only(recpipe_home):
    settings = load_settings()
    with session(settings) as wh:
        seed_report_rows(wh)
    with read_only_session(settings) as wh:
        data = collect(wh)
        with pytest.raises(Exception, match="read-only"):
            wh.execute("create table recpipe.nope (x int)")
    check_report_data(data)
    page = render_page(data, settings)
    assert page.count("data:image/png;base64,") == 2
    assert "0.35" in page and "union_recall_valid" in page
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # base64 may spell NaN
    assert "None" not in text and "NaN" not in text and "NaT" not in text
    assert "<td>1234</td>" in page and "<td>24680</td>" in page  # not 1234.0
    assert "<span class='status status-warn'>warn</span>" in page
    assert "<span class='status status-failed'>failed</span>" in page
    assert ".status-fail,.status-failed{color:#c62828}" in page


def test_display_frame_blanks_missing_values_prints_counts_as_integers_and_dates_as_dates():
    frame = pd.DataFrame(
        {
            "run_id": ["a", "<b>"],
            "run_date": [pd.Timestamp("2026-10-01"), pd.NaT],  # a DATE as DuckDB's .df() gives it
            "users": [1234.0, float("nan")],
            "rows": [None, 7],
            "error": [None, ""],
            "finished_at": [pd.Timestamp("2026-10-01 12:00"), pd.NaT],
            "status": ["warn", None],
        }
    )
    shown = display_frame(frame)
    assert shown.to_dict("list") == {
        "run_id": ["a", "&lt;b&gt;"],
        "run_date": ["2026-10-01", ""],
        "users": ["1234", ""],
        "rows": ["", "7"],
        "error": ["", ""],
        "finished_at": ["2026-10-01 12:00:00", ""],
        "status": ["<span class='status status-warn'>warn</span>", ""],
    }


@pytest.mark.parametrize("days", [[DATES[0]], list(DATES), pd.date_range("2026-06-01", periods=90)])
def test_date_axes_span_the_data(days):
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure

    axis = Figure().subplots()
    series = pd.Series(pd.to_datetime(days))
    axis.plot(series, range(len(series)))
    date_axis(axis, series)
    low, high = (mdates.num2date(x).replace(tzinfo=None) for x in axis.get_xlim())
    assert low <= series.min() and high >= series.max()
    assert (series.min() - low) <= pd.Timedelta(days=1) and (high - series.max()) <= pd.Timedelta(
        days=1
    )


def test_report_while_another_process_holds_the_writer(recpipe_home, tmp_path, capsys):
    """The report waits (--wait seconds) for the writer, then fails with one line and writes
    nothing; once the writer is gone it succeeds."""
    settings = load_settings()
    with session(settings) as wh:
        seed_report_rows(wh)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)",
            str(settings.duckdb_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseBusyError, match="locked by another process"):
            with read_only_session(settings, lock_timeout_s=1):
                pass
        out = tmp_path / "r.html"
        started = time.monotonic()
        assert main(["report", "--out", str(out), "--wait", "2"]) == 1
        assert time.monotonic() - started < 30
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "locked by another process" in err[0], err
        assert not out.exists()
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert main(["report", "--out", str(out)]) == 0
    assert "run30" in out.read_text()
