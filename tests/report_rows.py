"""Rows for the report's tables, written through the Warehouse interface (DuckDB or BigQuery):
two models, one run per date (one failed with an empty count), gate results with a warn and a
fail, candidate recall per source."""

from __future__ import annotations

import json
from datetime import date, datetime

from recpipe.tables import ensure_tables
from recpipe.warehouse import Warehouse

DATES = (date(2026, 9, 29), date(2026, 9, 30))


def seed_report_rows(wh: Warehouse) -> None:
    ensure_tables(wh)
    models, runs = wh.table("recpipe", "model_registry"), wh.table("recpipe", "pipeline_runs")
    checks_table = wh.table("recpipe", "dq_results")
    recall_table = wh.table("recpipe", "candidate_recall")
    for day, ndcg in zip(DATES, (0.31, 0.35), strict=True):
        run_id = f"run{day.day}"
        wh.execute(
            f"insert into {models} (model_version, as_of_date, trained_at, "
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
        failed = day == DATES[0]
        wh.execute(
            f"insert into {runs} (run_date, run_id, status, started_at, "
            "finished_at, model_version, users, rows, params, error) values (@d, @r, @s, @t, "
            "@t, @v, @u, @n, '{}', @e)",
            {
                "d": day,
                "r": run_id,
                "s": "failed" if failed else "success",
                "t": datetime(2026, 10, day.day - 28),
                "v": None if failed else f"m{day.day}",
                "u": None if failed else 1234,
                "n": None if failed else 24680,
                "e": "gate__raw failed: events_fresh" if failed else None,
            },
        )
        checks = [("candidates", "union_recall_valid", "pass"), ("raw", "events_fresh", "warn")]
        if failed:
            checks.append(("raw", "events_volume", "fail"))
        for stage, check, status in checks:
            wh.execute(
                f"insert into {checks_table} (run_date, run_id, stage, check_name, status, "
                "observed, threshold, details, checked_at) values (@d, @r, @stage, @check, "
                "@status, 0.6, 0.2, '', @t)",
                {
                    "d": day,
                    "r": run_id,
                    "stage": stage,
                    "check": check,
                    "status": status,
                    "t": datetime(2026, 10, day.day - 28),
                },
            )
        for source, recall in (("popularity", 0.4), ("union", 0.6)):
            wh.execute(
                f"insert into {recall_table} (run_date, run_id, cutoff, source, "
                "depth, recall, users) values (@d, @r, @d, @s, 50, @recall, 10)",
                {"d": day, "r": run_id, "s": source, "recall": recall},
            )


def check_report_data(data) -> None:
    """What :func:`seed_report_rows` must come back as, on any warehouse."""
    summary = data["gate_summary"]
    assert list(summary["run_id"]) == ["run30", "run29"]  # newest first
    counts = summary[["passed", "warned", "failed"]].astype(int).values.tolist()
    assert counts == [[1, 1, 0], [1, 1, 1]]
    assert data["recall"]["source"].value_counts().to_dict() == {"popularity": 2, "union": 2}
    assert sorted(data["runs"]["status"]) == ["failed", "success"]
