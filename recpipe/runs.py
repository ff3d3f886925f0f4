"""The run record: a run's validated params and as-of date, its cutoffs, and its row in
``recpipe.pipeline_runs`` (opened by the first task, closed as failed by the failure recorder,
as success by publish)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from recpipe.params import MAX_K, RETRAIN_MODES
from recpipe.settings import Settings, load_settings
from recpipe.tables import PUBLISHED, ensure_tables
from recpipe.warehouse import Warehouse, session

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ParamError(ValueError):
    """A run parameter is invalid; the run stops before touching the warehouse."""


@dataclass(frozen=True)
class Run:
    """One DAG run: the as-of date D and its validated params (JSON-serialisable via asdict)."""

    as_of: str
    run_id: str
    k: int
    retrain: str

    @property
    def as_of_date(self) -> date:
        return date.fromisoformat(self.as_of)

    @property
    def run_date(self) -> date:
        return self.as_of_date


def resolve_run(
    params: dict[str, Any], logical_date: datetime | None, run_after: datetime | None, run_id: str
) -> Run:
    """Validate DAG params and decide the as-of date.

    ``as_of`` param when given; else the logical date (scheduled runs and backfills: the run of
    day D uses events before D); else, for manual runs, the day the run was requested.
    """
    raw_as_of = params.get("as_of")
    if raw_as_of not in (None, ""):
        text = str(raw_as_of)
        if not _DATE.match(text):
            raise ParamError(f"as_of must be a date YYYY-MM-DD, got {text[:40]!r}")
        try:
            as_of = date.fromisoformat(text)
        except ValueError as err:
            raise ParamError(f"as_of is not a valid date: {text!r}") from err
    elif logical_date is not None:
        as_of = logical_date.astimezone(UTC).date()
    elif run_after is not None:
        as_of = run_after.astimezone(UTC).date()
    else:
        raise ParamError("cannot tell the as-of date: no as_of param and no logical date")
    k = params.get("k", 20)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ParamError(f"k must be an integer between 1 and {MAX_K}, got {str(k)[:40]!r}")
    retrain = params.get("retrain", "auto")
    if retrain not in RETRAIN_MODES:
        raise ParamError(
            f"retrain must be one of {', '.join(RETRAIN_MODES)}, got {str(retrain)[:40]!r}"
        )
    return Run(as_of=as_of.isoformat(), run_id=str(run_id), k=k, retrain=retrain)


def now() -> datetime:
    """Wall-clock time for bookkeeping columns only."""
    return datetime.now(UTC).replace(tzinfo=None)


def run_cutoffs(run: Run, settings: Settings) -> dict[str, date]:
    """The run's cutoffs by role, as dbt's ``int_cutoffs`` derives them from the same vars
    (``label_days``, ``train_cutoffs`` reach dbt from the settings: :meth:`Settings.dbt_vars`):
    serve = D, valid = D - label_days, train = D - 2 x label_days, train_2 one window earlier.."""
    window = timedelta(days=settings.label_days)
    cutoffs = {"serve": run.as_of_date, "valid": run.as_of_date - window}
    for step in range(1, settings.train_cutoffs + 1):
        role = "train" if step == 1 else f"train_{step}"
        cutoffs[role] = run.as_of_date - (step + 1) * window
    return cutoffs


def train_cutoffs(cutoffs: dict[str, date]) -> list[date]:
    """The training cutoffs among ``run_cutoffs`` (train, train_2, ..), latest first."""
    return sorted((c for role, c in cutoffs.items() if role.startswith("train")), reverse=True)


def start_run(run: Run, settings: Settings | None = None) -> None:
    """Create recpipe's tables if needed and record the run as running.

    An earlier run of the same date still marked running was killed before it could close
    (one run per date at a time): it is closed as failed. Should it still be alive (BigQuery
    allows overlapping runs), its own publish sets it to success again.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
        table = wh.table(PUBLISHED, "pipeline_runs")
        with wh.transaction():
            wh.execute(
                f"update {table} set status = 'failed', finished_at = @now, "
                "error = coalesce(error, @reason) "
                "where run_date = @run_date and status = 'running' and run_id <> @run_id",
                {
                    "now": now(),
                    "reason": f"abandoned: never finished; superseded by run {run.run_id}",
                    "run_date": run.run_date,
                    "run_id": run.run_id,
                },
            )
            wh.execute(f"delete from {table} where run_id = @run_id", {"run_id": run.run_id})
            wh.execute(
                f"insert into {table} (run_date, run_id, status, started_at, params) "
                "values (@run_date, @run_id, 'running', @started_at, @params)",
                {
                    "run_date": run.run_date,
                    "run_id": run.run_id,
                    "started_at": now(),
                    "params": json.dumps(asdict(run)),
                },
            )


def record_success(wh: Warehouse, run: Run, version: str, users: int, rows: int) -> None:
    """Close the run as a success (inside publish's transaction, with the rows it swapped in)."""
    wh.execute(
        f"update {wh.table(PUBLISHED, 'pipeline_runs')} set status = 'success', "
        "finished_at = @now, model_version = @v, users = @users, rows = @n, "
        "error = null where run_id = @run_id",
        {"now": now(), "v": version, "users": users, "n": rows, "run_id": run.run_id},
    )


def mark_failed(run: Run, reason: str | None, settings: Settings | None = None) -> str:
    """Record a failed run (keeping an earlier, more precise reason when ``reason`` is None).

    Published recommendations are left exactly as they were. Returns the recorded reason.
    """
    with session(settings or load_settings()) as wh:
        ensure_tables(wh)
        table = wh.table(PUBLISHED, "pipeline_runs")
        wh.execute(
            f"update {table} set status = 'failed', finished_at = @now, "
            "error = coalesce(@reason, error, 'a task failed') where run_id = @run_id",
            {"now": now(), "reason": reason[:1000] if reason else None, "run_id": run.run_id},
        )
        found = wh.query_df(
            f"select error from {table} where run_id = @run_id", {"run_id": run.run_id}
        )
        return str(found["error"].iloc[0]) if len(found) else (reason or "unknown")
