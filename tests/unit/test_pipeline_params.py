"""Run params are validated before any work: ids are data, params are never SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recpipe.runs import ParamError, resolve_run
from recpipe.warehouse import identifier

LOGICAL = datetime(2026, 10, 1, tzinfo=UTC)


def test_as_of_comes_from_param_then_logical_date_then_run_after():
    assert resolve_run({"as_of": "2026-09-15"}, LOGICAL, None, "r").as_of == "2026-09-15"
    assert resolve_run({}, LOGICAL, None, "r").as_of == "2026-10-01"
    assert resolve_run({"as_of": None}, None, LOGICAL, "r").as_of == "2026-10-01"
    with pytest.raises(ParamError, match="cannot tell the as-of date"):
        resolve_run({}, None, None, "r")


@pytest.mark.parametrize(
    "params",
    [
        {"as_of": "2026-10-01'; drop table raw.events; --"},
        {"as_of": "2026-02-30"},
        {"as_of": "01/10/2026"},
        {"k": 0},
        {"k": 10_000},
        {"k": "20; delete from recpipe.recommendations"},
        {"k": True},
        {"retrain": "sometimes"},
    ],
)
def test_bad_params_are_rejected_with_their_name(params):
    with pytest.raises(ParamError) as err:
        resolve_run(params, LOGICAL, None, "r")
    assert next(iter(params)) in str(err.value)


def test_defaults():
    run = resolve_run({}, LOGICAL, None, "scheduled__x")
    assert (run.k, run.retrain, run.run_id) == (20, "auto", "scheduled__x")


def test_identifiers_are_never_data():
    assert identifier("recommendations") == "recommendations"
    with pytest.raises(ValueError):
        identifier("x; drop table y")
