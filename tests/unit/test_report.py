"""recpipe.report on a real DuckDB file: empty warehouse, read-only access, plots from rows."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from recpipe.report import (
    WarehouseNotReadyError,
    collect,
    read_only_session,
    render_page,
    write_report,
)
from recpipe.settings import load_settings
from recpipe.tables import ensure_tables
from recpipe.warehouse import session


def test_no_warehouse_yet_is_a_clear_error(recpipe_home):
    with pytest.raises(WarehouseNotReadyError, match="no warehouse"):
        with read_only_session(load_settings()):
            pass


def test_empty_warehouse_renders_every_section_as_empty(recpipe_home, tmp_path):
    page = write_report(load_settings(), tmp_path / "r.html").read_text()
    assert page.count("nothing yet") >= 3 and "no model trained yet" in page


def test_page_shows_runs_metrics_and_recall_read_only(recpipe_home):
    settings = load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
        for day, ndcg in ((date(2026, 9, 29), 0.31), (date(2026, 9, 30), 0.35)):
            wh.execute(
                "insert into recpipe.model_registry (model_version, as_of_date, trained_at, "
                "status, validation_metrics, baseline_metrics) values (@v, @d, @t, 'champion', "
                "@m, @b)",
                {
                    "v": f"m{day.day}",
                    "d": day,
                    "t": datetime(2026, 10, 1),
                    "m": json.dumps({"ndcg@10": ndcg, "recall@10": 0.4}),
                    "b": json.dumps({"popularity": {"ndcg@10": 0.2, "recall@10": 0.3}}),
                },
            )
            wh.execute(
                "insert into recpipe.dq_results values (@d, @r, 'candidates', "
                "'union_recall_valid', 'pass', 0.6, 0.2, '', @t)",
                {"d": day, "r": f"run{day.day}", "t": datetime(2026, 10, day.day - 28)},
            )
            for source, recall in (("popularity", 0.4), ("union", 0.6)):
                wh.execute(
                    "insert into recpipe.candidate_recall (run_date, run_id, cutoff, source, "
                    "depth, recall, users) values (@d, @r, @d, @s, 50, @recall, 10)",
                    {"d": day, "r": f"run{day.day}", "s": source, "recall": recall},
                )
    with read_only_session(settings) as wh:
        data = collect(wh)
        with pytest.raises(Exception, match="read-only"):
            wh.execute("create table recpipe.nope (x int)")
    page = render_page(data, settings)
    assert page.count("data:image/png;base64,") == 2
    assert "0.35" in page and "union_recall_valid" in page
    assert list(data["gate_summary"]["run_id"]) == ["run30", "run29"]  # newest first
    assert data["recall"]["source"].value_counts().to_dict() == {"popularity": 2, "union": 2}
