"""The model registry (``recpipe.model_registry``): which model serves a date, champion and
challenger, and the record of every trained model with its metrics and baselines."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd

from recpipe import ranker
from recpipe.gates import FAIL, WARN, CheckResult, GateFailed, judge
from recpipe.params import AUTO_RETRAIN_DAYS
from recpipe.settings import Settings
from recpipe.tables import PUBLISHED
from recpipe.validation import EVAL_K, evaluate_on_window
from recpipe.warehouse import Warehouse

log = logging.getLogger(__name__)


def latest_champion(wh: Warehouse, as_of: date, since: date | None) -> pd.Series | None:
    """Newest champion trained for a date in (since, as_of]: point in time, never from later."""
    rows = wh.query_df(
        f"""select * from {wh.table(PUBLISHED, "model_registry")}
            where status = 'champion' and as_of_date <= @as_of and as_of_date > @since
            order by as_of_date desc, trained_at desc limit 1""",
        # date.min, not NULL: a NULL parameter has no type on BigQuery
        {"as_of": as_of, "since": since if since is not None else date.min},
    )
    return None if rows.empty else rows.iloc[0]


def compare_with_champion(
    wh: Warehouse, settings: Settings, as_of: date, version: str, metrics: dict, valid: date
) -> tuple[str, pd.Series | None, dict]:
    """Decide whether a new model may replace the champion, on the same validation window.

    The champion considered is the newest one trained for a date <= ``as_of`` (point in time:
    its training labels end before this run's validation window starts). The new model's
    NDCG@EVAL_K divided by the champion's is judged against ``model.challenger_ndcg_vs_champion``
    in gates.yml: below its fail level the newcomer is rejected and the champion keeps serving.
    Returns (status of the new model, the champion row or None, the decision record).
    """
    champion = latest_champion(wh, as_of, None)
    key = f"ndcg@{EVAL_K}"
    if champion is None or champion["model_version"] == version:
        return "challenger", None, {"decision": "challenger", "reason": "no earlier champion"}
    champion_version = str(champion["model_version"])
    try:
        booster, features = ranker.load(settings.models_dir / f"{champion_version}.txt")
        champion_metrics, _ = evaluate_on_window(
            wh, booster, features, valid, settings, with_baselines=False
        )
    except (FileNotFoundError, ValueError) as err:
        reason = f"champion {champion_version} cannot be evaluated ({err}); replaced"
        return "challenger", None, {"decision": "challenger", "reason": reason}
    new, old = float(metrics[key]), float(champion_metrics[key])
    ratio = new / old if old > 0 else (math.inf if new > 0 else 1.0)
    verdict = judge("model", "challenger_ndcg_vs_champion", ratio)
    accepted = verdict.status != "fail"
    record = {
        "decision": "challenger" if accepted else "rejected",
        "champion": champion_version,
        f"champion_{key}": old,
        f"challenger_{key}": new,
        "ratio": ratio,
        "tolerance_floor": verdict.threshold,
        "reason": (
            f"{key} {new:.4f} vs champion {champion_version} {old:.4f} on the window from "
            f"{valid} (ratio {ratio:.3f}, floor {verdict.threshold})"
            + ("" if accepted else "; the champion keeps serving")
        ),
    }
    return ("challenger" if accepted else "rejected"), (None if accepted else champion), record


def model_row(wh: Warehouse, version: str) -> pd.Series:
    rows = wh.query_df(
        f"select * from {wh.table(PUBLISHED, 'model_registry')} where model_version = @v",
        {"v": version},
    )
    if rows.empty:
        raise GateFailed(f"model {version} is not in the model registry")
    return rows.iloc[0]


def champion_comparison(wh: Warehouse, as_of: date) -> list[CheckResult]:
    """The champion/challenger verdict of the model trained for D, if one was compared.

    A rejected challenger does not stop the run (the champion serves), so its "fail" is
    recorded as a warning with the reason.
    """
    rows = wh.query_df(
        f"select validation_metrics from {wh.table(PUBLISHED, 'model_registry')} "
        "where as_of_date = @d order by trained_at desc limit 1",
        {"d": as_of},
    )
    metrics = json.loads(rows["validation_metrics"].iloc[0] or "{}") if len(rows) else {}
    decision = metrics.get("champion_decision", {})
    if "ratio" not in decision:
        return []
    verdict = judge("model", "challenger_ndcg_vs_champion", decision["ratio"], decision["reason"])
    return [replace(verdict, status=WARN) if verdict.status == FAIL else verdict]


def set_status(wh: Warehouse, version: str, status: str, only_if: str) -> None:
    wh.execute(
        f"update {wh.table(PUBLISHED, 'model_registry')} set status = @status "
        "where model_version = @v and status = @only_if",
        {"status": status, "v": version, "only_if": only_if},
    )


def reusable_champion(wh: Warehouse, settings: Settings, as_of: date, retrain: str) -> str | None:
    """The champion that serves ``as_of`` without training (``retrain`` auto or never), or None
    when a new model must be trained.

    auto: a champion trained for a date in the last AUTO_RETRAIN_DAYS days; never: the newest
    champion for a date <= ``as_of``, and GateFailed when there is none. A champion whose
    artifact is gone or corrupt cannot serve: never fails, auto trains a replacement.
    """
    since = None if retrain == "never" else as_of - timedelta(days=AUTO_RETRAIN_DAYS)
    champion = latest_champion(wh, as_of, since)
    unusable = None
    if champion is not None:
        try:
            ranker.load(settings.models_dir / f"{champion['model_version']}.txt")
            return str(champion["model_version"])
        except (FileNotFoundError, ValueError) as err:
            unusable = str(err)
    if retrain == "never":
        raise GateFailed(
            f"retrain=never but no usable champion model exists for {as_of}"
            + (f": {unusable}" if unusable else "")
        )
    if unusable:
        log.warning("champion not usable (%s); training a new model", unusable)
    return None


def record(wh: Warehouse, row: dict) -> None:
    """Write one trained model's row (replacing an earlier row of the same version)."""
    registry = wh.table(PUBLISHED, "model_registry")
    with wh.transaction():
        wh.execute(f"delete from {registry} where model_version = @v", {"v": row["model_version"]})
        wh.execute(
            f"insert into {registry} ({', '.join(row)}) values ({', '.join('@' + c for c in row)})",
            row,
        )
