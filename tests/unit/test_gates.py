"""Gates judge measured figures against configured thresholds and can fail."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from recpipe.gates import FAIL, PASS, WARN, GateFailed, enforce, gate_config, judge
from recpipe.tables import ensure_tables
from recpipe.warehouse import DuckDBWarehouse


def test_min_rule_levels():
    # raw.volume_vs_trailing_median: warn below 0.5, fail below 0.2
    assert judge("raw", "volume_vs_trailing_median", 0.9).status == PASS
    assert judge("raw", "volume_vs_trailing_median", 0.3).status == WARN
    failed = judge("raw", "volume_vs_trailing_median", 0.05)
    assert failed.status == FAIL and failed.threshold == 0.2


def test_max_rule_levels():
    assert judge("raw", "freshness_days", 0.5).status == PASS
    assert judge("raw", "freshness_days", 2).status == WARN
    assert judge("raw", "freshness_days", 4).status == FAIL
    assert judge("raw", "freshness_days", math.inf).status == FAIL


def test_nothing_to_measure_passes_with_reason_and_unknown_checks_are_errors():
    result = judge("raw", "volume_vs_trailing_median", float("nan"), "no history")
    assert result.status == PASS and result.details == "no history"
    with pytest.raises(KeyError, match="no threshold configured"):
        judge("raw", "made_up_check", 1)


def test_every_configured_check_can_fail():
    for stage, checks in gate_config().items():
        for name, rule in checks.items():
            ((direction, levels),) = rule.items()
            assert direction in ("min", "max") and "fail" in levels, f"{stage}.{name}"
            worse = levels["fail"] - 1 if direction == "min" else levels["fail"] + 1
            assert judge(stage, name, worse).status == FAIL


def test_enforce_records_every_result_and_raises_one_line(tmp_path):
    wh = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    ensure_tables(wh)
    results = [judge("raw", "available_items", 0), judge("raw", "freshness_days", 0.2)]
    with pytest.raises(GateFailed) as err:
        enforce(wh, date(2026, 10, 1), "run-1", results)
    assert "available_items=0" in str(err.value) and "\n" not in str(err.value)
    # rerunning the gate for the same run replaces, not duplicates, its rows
    enforce(wh, date(2026, 10, 1), "run-1", [judge("raw", "available_items", 5)])
    rows = wh.query_df("select check_name, status from recpipe.dq_results")
    assert rows.values.tolist() == [["available_items", "pass"]]
    wh.close()


def test_feature_drift_is_the_largest_mean_shift_in_previous_standard_deviations():
    from recpipe.quality import _feature_drift

    previous = pd.DataFrame(
        {
            "table_name": ["t", "t", "t"],
            "column_name": ["a", "b", "constant"],
            "mean": [10.0, 1.0, 0.0],
            "stddev": [2.0, 0.5, 0.0],
        }
    )
    same, _ = _feature_drift(previous, previous)
    assert same == 0
    moved = previous.assign(mean=[11.0, 3.0, 0.0])  # a: 0.5 sd, b: 4 sd
    shift, detail = _feature_drift(moved, previous)
    assert shift == 4.0 and "t.b" in detail
    assert judge("features", "drift_vs_previous_run", shift).status == FAIL
    assert math.isnan(_feature_drift(moved, previous.iloc[:0])[0])  # no earlier run


def test_score_distribution_compares_shapes_with_the_previous_publish(tmp_path):
    from recpipe.quality import _score_shift

    wh = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    ensure_tables(wh)
    day = date(2026, 10, 1)
    rng = np.random.default_rng(0)
    previous = pd.DataFrame(
        {
            "run_date": day - timedelta(days=1),
            "user_id": [f"u{i // 10}" for i in range(2000)],
            "rank": [i % 10 + 1 for i in range(2000)],
            "item_id": [f"i{i}" for i in range(2000)],
            "score": rng.normal(size=2000),
            "model_version": "m",
            "sources": "popularity",
        }
    )
    wh.write_df(previous, "work", "previous")
    wh.execute("insert into recpipe.recommendations select * from work.previous")
    assert math.isnan(_score_shift(wh, "work.previous", day - timedelta(days=1))[0])

    def shift(scores) -> float:
        wh.write_df(previous.assign(run_date=day, score=scores), "work", "staged")
        return _score_shift(wh, "work.staged", day)[0]

    assert shift(previous["score"] * 7 + 3) < 0.05  # a rescaled model: same shape
    assert shift(rng.normal(size=2000)) < 0.1  # another day, same model
    assert shift(np.full(2000, 0.5)) == 1.0  # collapsed
    assert shift(np.exp(3 * previous["score"])) > 0.3  # distorted
    wh.close()
