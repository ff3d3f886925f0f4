"""``recpipe report``: a static HTML page with the runs, gates and metrics, for people without
Airflow. Plots are matplotlib PNGs embedded in the page, so the file stands alone."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from recpipe.settings import Settings
from recpipe.tables import ensure_tables
from recpipe.warehouse import session


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _metrics_plot(models: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    dates = pd.to_datetime(models["as_of_date"])
    for axis, metric in zip(axes, ("ndcg@10", "recall@10"), strict=True):
        ranker = [json.loads(m).get(metric) for m in models["validation_metrics"]]
        popularity = [json.loads(b)["popularity"].get(metric) for b in models["baseline_metrics"]]
        axis.plot(dates, ranker, marker="o", label="LightGBM ranker")
        axis.plot(dates, popularity, marker="s", label="popularity baseline")
        axis.set_title(f"{metric.upper()} on the validation week")
        axis.set_ylim(bottom=0)
        axis.tick_params(axis="x", rotation=30)
    axes[0].legend()
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _recall_plot(recall: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot(pd.to_datetime(recall["run_date"]), recall["observed"], marker="o")
    axis.axhline(recall["threshold"].iloc[-1], color="red", linestyle="--", label="fail floor")
    axis.set_title("Candidate union recall (validation week)")
    axis.set_ylim(0, 1)
    axis.legend()
    axis.tick_params(axis="x", rotation=30)
    encoded = _png(fig)
    plt.close(fig)
    return encoded


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="")


def write_report(settings: Settings, out: Path) -> Path:
    """Write the report to ``out`` (atomically) and return its path."""
    with session(settings) as wh:
        ensure_tables(wh)
        runs = wh.query_df(
            "select run_date, run_id, status, started_at, finished_at, "
            "model_version, users, rows, error from recpipe.pipeline_runs "
            "order by started_at desc limit 30"
        )
        gates = wh.query_df(
            "select run_date, stage, check_name, status, observed, threshold, "
            "details from recpipe.dq_results where run_id = (select run_id "
            "from recpipe.pipeline_runs order by started_at desc limit 1) "
            "order by stage, check_name"
        )
        models = wh.query_df("select * from recpipe.model_registry order by as_of_date")
        recall = wh.query_df(
            "select run_date, observed, threshold from recpipe.dq_results "
            "where check_name = 'union_recall_valid' order by run_date"
        )
        sample = wh.query_df(
            "select * from recpipe.recommendations_latest "
            "where user_id in (select distinct user_id from "
            "recpipe.recommendations_latest order by user_id limit 3) "
            "and rank <= 5 order by user_id, rank"
        )
    parts = [
        "<!doctype html><meta charset='utf-8'><title>recpipe report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px}"
        ".fail{color:#b00}</style>",
        "<h1>recpipe report</h1><h2>Recent runs</h2>",
        _table(runs),
    ]
    if not models.empty:
        parts += [
            "<h2>Ranker vs popularity</h2>",
            f"<img alt='metrics per model' src='data:image/png;base64,{_metrics_plot(models)}'>",
            _table(models[["model_version", "as_of_date", "status"]]),
        ]
    if not recall.empty:
        parts += [
            "<h2>Candidate recall</h2>",
            f"<img alt='candidate recall' src='data:image/png;base64,{_recall_plot(recall)}'>",
        ]
    parts += [
        "<h2>Gates of the latest run</h2>",
        _table(gates),
        "<h2>Sample of the latest recommendations</h2>",
        _table(sample),
        f"<p>Warehouse: {html.escape(settings.warehouse)}</p>",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(out)
    return out
