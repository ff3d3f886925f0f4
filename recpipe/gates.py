"""Data-quality gates: compare measured figures with thresholds from ``config/gates.yml``.

A gate records every check of its stage in ``recpipe.dq_results`` and then, if any check
failed, raises :class:`GateFailed` with a one-line reason. Warnings are recorded only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from recpipe.tables import PUBLISHED
from recpipe.warehouse import Warehouse, batch_table

DEFAULT_CONFIG = Path(__file__).parent / "config" / "gates.yml"
PASS, WARN, FAIL = "pass", "warn", "fail"


class GateFailed(RuntimeError):
    """A fail-level check did not hold; the run must stop before publishing."""


@dataclass(frozen=True)
class CheckResult:
    stage: str
    check_name: str
    status: str
    observed: float
    threshold: float | None
    details: str


@cache
def _load_config(path: str) -> dict[str, dict[str, Any]]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def gate_config() -> dict[str, dict[str, Any]]:
    """The gate thresholds; ``RECPIPE_GATES_FILE`` points to another file (e.g. in tests)."""
    return _load_config(os.environ.get("RECPIPE_GATES_FILE", str(DEFAULT_CONFIG)))


def judge(stage: str, check_name: str, observed: float, details: str = "") -> CheckResult:
    """Compare ``observed`` with the configured levels of ``stage.check_name``.

    A NaN observation (nothing to measure, e.g. no history yet) passes with its reason in
    ``details``; a check missing from the config is an error, never a silent pass.
    """
    try:
        rule = gate_config()[stage][check_name]
    except KeyError as err:
        raise KeyError(f"no threshold configured for gate check {stage}.{check_name}") from err
    ((direction, levels),) = rule.items()
    observed = float(observed)
    if math.isnan(observed):
        return CheckResult(stage, check_name, PASS, observed, levels.get(FAIL), details)

    def broken(threshold: float) -> bool:
        return observed < threshold if direction == "min" else observed > threshold

    for status in (FAIL, WARN):
        if status in levels and broken(levels[status]):
            return CheckResult(stage, check_name, status, observed, levels[status], details)
    return CheckResult(
        stage, check_name, PASS, observed, levels.get(FAIL, levels.get(WARN)), details
    )


def record(wh: Warehouse, run_date: date, run_id: str, results: list[CheckResult]) -> None:
    """Store results in ``dq_results``, replacing this run's earlier results for the same checks."""
    if not results:
        return
    import pandas as pd

    checked_at = datetime.now(UTC).replace(tzinfo=None)
    frame = pd.DataFrame(
        {
            "run_date": [run_date] * len(results),
            "run_id": [run_id] * len(results),
            "stage": [r.stage for r in results],
            "check_name": [r.check_name for r in results],
            "status": [r.status for r in results],
            "observed": [r.observed for r in results],
            "threshold": [r.threshold for r in results],
            "details": [r.details for r in results],
            "checked_at": [checked_at] * len(results),
        }
    )
    table = wh.table(PUBLISHED, "dq_results")
    with batch_table(wh, frame, "dq_batch") as batch, wh.transaction():
        wh.execute(
            f"delete from {table} where run_id = @run_id and stage = @stage",
            {"run_id": run_id, "stage": results[0].stage},
        )
        wh.execute(f"insert into {table} select * from {batch}")


def enforce(wh: Warehouse, run_date: date, run_id: str, results: list[CheckResult]) -> None:
    """Record ``results`` and raise :class:`GateFailed` if any of them failed."""
    record(wh, run_date, run_id, results)
    failed = [r for r in results if r.status == FAIL]
    if failed:
        stage = failed[0].stage
        reasons = "; ".join(
            f"{r.check_name}={r.observed:g} (threshold {r.threshold:g})"
            + (f" {r.details}" if r.details else "")
            for r in failed
        )
        raise GateFailed(f"gate {stage} failed for {run_date}: {reasons}")
