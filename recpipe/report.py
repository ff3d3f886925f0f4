"""What operators look at: recent runs, gate results, ranker vs baseline metrics over time,
candidate recall and a sample of the latest recommendations, read from the warehouse.

Two front ends share this module: ``recpipe report`` writes a static HTML file (for people
without Airflow), and the Airflow plugin (``plugins/recpipe_plugin.py``) serves the same page
inside the Airflow UI. Plots are matplotlib PNGs embedded as data URIs, so a page stands alone.
Plots use matplotlib's object API (no pyplot): the plugin renders in several threads.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd

from recpipe.gates import FAIL, gate_config
from recpipe.settings import Settings
from recpipe.tables import PUBLISHED, UNION_SOURCE
from recpipe.warehouse import DuckDBWarehouse, Warehouse, connect

METRICS = ("ndcg@10", "recall@10")
RECENT_RUNS = 30
SAMPLE_USERS = 3
SAMPLE_RANKS = 5


class WarehouseNotReadyError(RuntimeError):
    """There is no warehouse to read yet (nothing ingested or run)."""


@contextlib.contextmanager
def read_only_session(settings: Settings, lock_timeout_s: float = 10.0) -> Iterator[Warehouse]:
    """Open the warehouse for reading only and always close it.

    DuckDB: ``read_only=True`` (never the writer lock; waits up to ``lock_timeout_s`` while
    another process writes, then a one-line :class:`WarehouseBusyError`). BigQuery: only reads
    are issued (no dataset or table is created). DuckDB refuses a read-only connection in a
    process that also holds a read-write one, so use this only in processes that do not write.
    """
    if settings.warehouse_file is not None:
        if not settings.warehouse_file.exists():
            raise WarehouseNotReadyError(f"no warehouse at {settings.warehouse_file} yet")
        # a short wait: a page view should not hang while a run writes
        try:
            wh: Warehouse = DuckDBWarehouse(
                str(settings.duckdb_path),
                read_only=True,
                lock_timeout_s=lock_timeout_s,
                memory_limit=settings.duckdb_memory_limit,
            )
        except duckdb.ConnectionException as err:
            if "different configuration" not in str(err):
                raise
            # this process already holds the file read-write (e.g. in-process dbt after a run):
            # share that database; the report still issues reads only
            wh = DuckDBWarehouse(
                str(settings.duckdb_path),
                lock_timeout_s=lock_timeout_s,
                memory_limit=settings.duckdb_memory_limit,
            )
    else:
        wh = connect(settings)
    try:
        yield wh
    finally:
        wh.close()


def collect(wh: Warehouse) -> dict[str, pd.DataFrame]:
    """Everything the page shows, as DataFrames (empty ones when a table does not exist yet)."""
    present = {
        name: wh.table_exists(PUBLISHED, name)
        for name in (
            "pipeline_runs",
            "dq_results",
            "model_registry",
            "candidate_recall",
            "recommendations",
        )
    }

    def read(table: str, sql: str) -> pd.DataFrame:
        return wh.query_df(sql) if present[table] else pd.DataFrame()

    runs, checks = wh.table(PUBLISHED, "pipeline_runs"), wh.table(PUBLISHED, "dq_results")
    models, recall = wh.table(PUBLISHED, "model_registry"), wh.table(PUBLISHED, "candidate_recall")
    latest = wh.table(PUBLISHED, "recommendations_latest")

    return {
        "runs": read(
            "pipeline_runs",
            "select run_date, run_id, status, started_at, finished_at, model_version, users, "
            f"rows, error from {runs} order by started_at desc limit {RECENT_RUNS}",
        ),
        "gate_summary": read(
            "dq_results",
            # sum(case ...), not DuckDB's count(*) filter (where ...): GoogleSQL lacks it
            "select run_date, run_id, sum(case when status = 'pass' then 1 else 0 end) as passed, "
            "sum(case when status = 'warn' then 1 else 0 end) as warned, "
            "sum(case when status = 'fail' then 1 else 0 end) as failed, "
            "string_agg(case when status <> 'pass' then stage || '.' || check_name end, ', ') "
            "as not_passed, max(checked_at) as checked_at "
            f"from {checks} group by run_date, run_id "
            f"order by checked_at desc limit {RECENT_RUNS}",
        ),
        "gates": read(
            "dq_results",
            "select run_date, stage, check_name, status, observed, threshold, details "
            f"from {checks} where run_id = (select run_id from {checks} "
            "order by checked_at desc limit 1) order by stage, check_name",
        ),
        "models": read(
            "model_registry",
            "select model_version, as_of_date, trained_at, status, validation_metrics, "
            f"baseline_metrics from {models} order by as_of_date, trained_at",
        ),
        "recall": read(
            "candidate_recall",
            # reruns of a date measure the same window: one value per date and source
            f"select run_date, source, max(recall) as recall from {recall} "
            "group by run_date, source order by run_date, source",
        ),
        "sample": read(
            "recommendations",
            "select run_date, user_id, rank, item_id, round(score, 4) as score, model_version, "
            f"sources from {latest} where user_id in (select distinct "
            f"user_id from {latest} order by user_id limit {SAMPLE_USERS})"
            f" and rank <= {SAMPLE_RANKS} order by user_id, rank",
        ),
    }


HEADLINE_METRIC = "ndcg@10"


def strongest_baseline(
    baselines: dict[str, dict], metric: str = HEADLINE_METRIC
) -> tuple[str, dict]:
    """The baseline of a run (``model_registry.baseline_metrics``) with the highest ``metric``,
    as (name, its metrics); ("", {}) when the run measured none. Headlines compare the ranker
    with this one, not with popularity, the weakest baseline on most shops (issue 11)."""
    measured = {
        name: values
        for name, values in baselines.items()
        if isinstance(values, dict) and values.get(metric) is not None
    }
    if not measured:
        return "", {}
    name = max(sorted(measured), key=lambda n: measured[n][metric])
    return name, measured[name]


def metrics_frame(models: pd.DataFrame) -> pd.DataFrame:
    """One row per model: its as-of date, each metric for the ranker and for the strongest
    baseline of that model's validation run (by NDCG@10), and which baseline that was."""
    rows = []
    # A retrain can reproduce an existing version (deterministic training): show it once.
    models = models.drop_duplicates("model_version", keep="last")
    for _, model in models.iterrows():
        ranker = json.loads(model["validation_metrics"] or "{}")
        name, baseline = strongest_baseline(json.loads(model["baseline_metrics"] or "{}"))
        row = {"model_version": model["model_version"], "as_of_date": model["as_of_date"]}
        for metric in METRICS:
            row[f"ranker {metric}"] = ranker.get(metric)
            row[f"best baseline {metric}"] = baseline.get(metric)
        row["best baseline"] = name
        rows.append(row)
    return pd.DataFrame(rows)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def date_axis(axis, dates: pd.Series | pd.DatetimeIndex) -> None:
    """Make ``axis``'s x axis span the data's dates (half a day either side, whole days for a
    single date) with readable date ticks, not matplotlib's default span from 1970 or a
    year around one point."""
    from matplotlib import dates as mdates

    dates = pd.to_datetime(pd.Series(dates)).dropna()
    if dates.empty:
        return
    pad = pd.Timedelta(hours=12)
    axis.set_xlim(dates.min() - pad, dates.max() + pad)
    locator = mdates.AutoDateLocator(minticks=2, maxticks=8)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _metrics_plot(metrics: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(1, 2)
    dates = pd.to_datetime(metrics["as_of_date"])
    for axis, metric in zip(axes, METRICS, strict=True):
        axis.plot(dates, metrics[f"ranker {metric}"], marker="o", label="LightGBM ranker")
        axis.plot(dates, metrics[f"best baseline {metric}"], marker="s", label="strongest baseline")
        axis.set_title(f"{metric.upper()} on the validation week, per model")
        axis.set_ylim(bottom=0)
        date_axis(axis, dates)
    axes[0].legend()
    return _png(fig)


def _recall_plot(recall: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    axis = fig.subplots()
    per_source = recall.pivot(index="run_date", columns="source", values="recall")
    dates = pd.to_datetime(per_source.index)
    for source in per_source.columns.drop(UNION_SOURCE, errors="ignore"):
        axis.plot(dates, per_source[source], marker=".", linewidth=1, alpha=0.7, label=source)
    if UNION_SOURCE in per_source:
        axis.plot(
            dates, per_source[UNION_SOURCE], marker="o", linewidth=2.5, color="black", label="union"
        )
    fail_floor = gate_config()["candidates"]["union_recall_valid"]["min"].get(FAIL)
    if fail_floor is not None:
        axis.axhline(fail_floor, color="red", linestyle="--", label="union fail floor")
    axis.set_title("Candidate recall on the validation week, per run date")
    axis.set_ylim(0, 1)
    axis.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    date_axis(axis, dates)
    return _png(fig)


# Columns holding counts: integers on the page (a nullable count would otherwise print as 12.0).
COUNT_COLUMNS = ("users", "rows", "passed", "warned", "failed")
STATUS_COLUMNS = ("status",)
# DATE columns, which DuckDB hands to pandas as midnight timestamps: shown as the date only
DATE_COLUMNS = ("run_date", "as_of_date")


def _cell(value) -> str:
    """One cell's HTML: missing values (None, NaN, NaT) blank, text escaped."""
    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return ""
    return html.escape(str(value))


def _status(value) -> str:
    text = _cell(value)
    return f"<span class='status status-{text}'>{text}</span>" if text else ""


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as the page shows it: counts as integers, every cell as escaped HTML, gate and
    run statuses wrapped in a span whose class gives their colour."""
    shown = frame.copy()
    for column in shown.columns:
        if column in COUNT_COLUMNS:
            shown[column] = pd.to_numeric(shown[column], errors="coerce").round().astype("Int64")
        if column in DATE_COLUMNS:
            shown[column] = pd.to_datetime(shown[column]).dt.date
        render = _status if column in STATUS_COLUMNS else _cell
        shown[column] = [render(value) for value in shown[column].astype(object)]
    return shown


def _table(frame: pd.DataFrame, css_class: str) -> str:
    if frame.empty:
        return "<p class='empty'>nothing yet</p>"
    return display_frame(frame).to_html(index=False, escape=False, border=0, classes=css_class)


STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
    "td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px;text-align:left}"
    "h2{margin-top:1.4em}.empty{color:#777}.note{color:#555;font-size:13px}"
    ".status{font-weight:bold}.status-pass,.status-success,.status-champion{color:#1a7f37}"
    ".status-warn{color:#b35900}.status-fail,.status-failed{color:#c62828}"
    ".status-running{color:#1f5fbf}"
)


def render_body(data: dict[str, pd.DataFrame]) -> str:
    """The sections of the page (HTML), from :func:`collect`'s frames."""
    parts = ["<h2 id='runs'>Recent runs</h2>", _table(data["runs"], "runs")]
    parts += [
        "<h2 id='gates'>Gate results per run</h2>",
        _table(data["gate_summary"], "gate-summary"),
        "<h3>Checks of the latest run</h3>",
        _table(data["gates"], "gates"),
    ]
    parts.append("<h2 id='metrics'>Ranker vs the strongest baseline</h2>")
    if data["models"].empty:
        parts.append("<p class='empty'>no model trained yet</p>")
    else:
        metrics = metrics_frame(data["models"])
        parts += [
            f"<img id='metrics-plot' alt='ranker and baseline metrics per model' "
            f"src='data:image/png;base64,{_metrics_plot(metrics)}'>",
            _table(
                metrics.merge(
                    data["models"][["model_version", "status"]].drop_duplicates(
                        "model_version", keep="last"
                    ),
                    on="model_version",
                ),
                "metrics",
            ),
        ]
    parts.append("<h2 id='recall'>Candidate recall</h2>")
    if data["recall"].empty:
        parts.append("<p class='empty'>no candidate gate has run yet</p>")
    else:
        parts += [
            "<p class='note'>Share of the validation week's purchases that each candidate "
            "source, and their union (black; gate check <code>union_recall_valid</code>), "
            "proposed at the candidate depth (<code>recpipe.candidate_recall</code>); the "
            "ranker cannot recover what no source proposed.</p>",
            f"<img id='recall-plot' alt='candidate recall per run date' "
            f"src='data:image/png;base64,{_recall_plot(data['recall'])}'>",
        ]
    parts += [
        "<h2 id='sample'>Sample of the latest published recommendations</h2>",
        _table(data["sample"], "sample"),
    ]
    return "\n".join(parts)


def render_page(data: dict[str, pd.DataFrame], settings: Settings, note: str = "") -> str:
    """A whole HTML page."""
    where = settings.warehouse + (
        f" ({settings.warehouse_file})" if settings.warehouse_file is not None else ""
    )
    return "\n".join(
        [
            "<!doctype html><meta charset='utf-8'><title>recpipe</title>",
            f"<style>{STYLE}</style>",
            "<h1>recpipe — daily recommendations</h1>",
            f"<p class='note'>Warehouse: {html.escape(where)}. {html.escape(note)}</p>",
            render_body(data),
        ]
    )


def write_report(settings: Settings, out: Path, lock_timeout_s: float = 10.0) -> Path:
    """Write the report to ``out`` (atomically) and return its path; reads the warehouse only."""
    with read_only_session(settings, lock_timeout_s=lock_timeout_s) as wh:
        data = collect(wh)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render_page(data, settings))
    tmp.replace(out)
    return out
