"""Gates judge measured figures against configured thresholds and can fail."""

from __future__ import annotations

import math
from datetime import date

import pytest

from recpipe.gates import FAIL, PASS, WARN, GateFailed, enforce, gate_config, judge
from recpipe.tables import ensure_tables
from recpipe.warehouse import DuckDBWarehouse


def test_min_rule_levels():
    # raw.volume_vs_trailing_median: warn below 0.5, fail below 0.1
    assert judge("raw", "volume_vs_trailing_median", 0.9).status == PASS
    assert judge("raw", "volume_vs_trailing_median", 0.3).status == WARN
    failed = judge("raw", "volume_vs_trailing_median", 0.05)
    assert failed.status == FAIL and failed.threshold == 0.1


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
