"""The Instacart ceiling study builds each query from what was known before its basket.

A leak here is how the study first overstated the ranker: item counts over the whole log hold
the query's own basket. These tests pin the time slice on a made-up log of three users.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location(
        "bench_instacart_ceiling", ROOT / "bench" / "instacart_ceiling.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def split(tmp_path: Path) -> Path:
    rows = [
        # u1: a+b on 2017-06-01, a on 06-10; truth (06-30): a, c
        ("u1", "a", "2017-06-01T10:00:00Z", "o1"),
        ("u1", "b", "2017-06-01T10:00:00Z", "o1"),
        ("u1", "a", "2017-06-10T09:00:00Z", "o2"),
        # u2: a on 06-01 and again on 06-10 (the same day as u1's second basket)
        ("u2", "a", "2017-06-01T12:00:00Z", "o3"),
        ("u2", "a", "2017-06-10T12:00:00Z", "o4"),
        # u3: b on 06-05; truth: b
        ("u3", "b", "2017-06-05T10:00:00Z", "o5"),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_ts", "session_id"])
    events = events.assign(event_type="purchase", quantity=1)
    events.to_csv(tmp_path / "events.csv", index=False)
    truth = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "c", "a", "b"]})
    truth.to_csv(tmp_path / "truth.csv", index=False)
    return tmp_path


def test_queries_see_only_earlier_baskets(study, split: Path) -> None:
    baskets, lines = study.load_baskets(split)
    u1 = baskets[baskets["user_id"] == "u1"]
    assert list(u1["items"]) == [frozenset("ab"), frozenset("a"), frozenset("ac")]
    assert list(u1["is_truth"]) == [False, False, True]

    queries = study.personal_features(baskets, {"a": "x", "b": "y"})
    queries = study.add_item_history(queries, lines).set_index(["query", "item_id"])
    # u1's second basket (06-10): only the first basket is history; the label is its content
    assert queries.loc[("u1:1", "a"), "label"] == 1
    assert queries.loc[("u1:1", "b"), "label"] == 0
    assert queries.loc[("u1:1", "a"), "count"] == 1
    # item a before 06-10: bought by u1 and u2 on 06-01 only; u2's rebuy on 06-10 is not known
    assert queries.loc[("u1:1", "a"), "item_purchases"] == 2
    assert queries.loc[("u1:1", "a"), "item_rebuy_share"] == pytest.approx((0 + 1) / (2 + 2))
    # the truth query (06-30) knows every history basket: a bought 4 times, u2 and u1 again
    truth = queries.loc[("u1:2", "a")]
    assert (truth["label"], truth["count"], truth["streak"]) == (1, 2, 2)
    assert truth["item_purchases"] == 4
    assert truth["item_rebuy_share"] == pytest.approx((2 + 1) / (2 + 2))
    # c was never bought before the truth basket: not a candidate
    assert ("u1:2", "c") not in queries.index


def test_transitions_count_only_baskets_that_followed_before_the_query_day(study, split) -> None:
    baskets, _ = study.load_baskets(split)
    queries = study.personal_features(baskets, {})
    queries = study.add_transitions(queries, baskets).set_index(["query", "item_id"])
    # 06-10: the only basket pairs end on 06-10 themselves (u1's and u2's): not known yet
    assert queries.loc[("u1:1", "a"), "transition"] == 0
    assert queries.loc[("u1:1", "b"), "transition"] == 0
    # the truth day: both baskets holding a (u1's a+b, u2's a) were followed by a, never by b
    assert queries.loc[("u1:2", "a"), "transition"] == pytest.approx(1.0)
    assert queries.loc[("u1:2", "b"), "transition"] == 0
    # u3's last basket held b; the one basket holding b before (u1's a+b) was followed by a only
    assert queries.loc[("u3:1", "b"), "transition"] == 0
