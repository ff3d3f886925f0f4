"""The Instacart bench scores published lists as the shared split's ``score.py`` does.

Runs the shared scorer (read in place from ``../shared/data/instacart_valid/``) on a small
made-up recommendations/truth/history triple written to tmp and compares every figure with
``bench/quality.py``'s ``score_published`` (``recpipe.evaluation``) to 3 decimals. Skipped when
the shared directory is absent.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCORER = ROOT.parent / "shared" / "data" / "instacart_valid" / "score.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SCORER.exists(), reason=f"{SCORER} absent (shared data not beside clone)")
def test_bench_scoring_agrees_with_shared_score_py(tmp_path: Path) -> None:
    recs = pd.DataFrame(
        [
            # u1: hits at ranks 1 and 3, one repeat one new; more truth items than hits
            ("u1", "a", 1), ("u1", "x", 2), ("u1", "n1", 3), ("u1", "y", 4),
            # u2: 12 items, a hit at rank 11 (counts at @20 only), a hit at rank 2
            *[("u2", f"i{r}", r) for r in range(1, 13)],
            # u3: no hit at all
            ("u3", "z", 1), ("u3", "w", 2),
            # u5: not in truth (ignored)
            ("u5", "a", 1),
        ],
        columns=["user_id", "item_id", "rank"],
    )  # fmt: skip
    truth = pd.DataFrame(
        [("u1", "a"), ("u1", "n1"), ("u1", "b"), ("u2", "i2"), ("u2", "i11"), ("u3", "q"),
         ("u4", "a")],  # u4 has no recommendation: scores 0
        columns=["user_id", "item_id"],
    )  # fmt: skip
    history = pd.DataFrame(
        [("u1", "a"), ("u1", "b"), ("u2", "i2"), ("u3", "q"), ("u4", "zz")],
        columns=["user_id", "item_id"],
    )
    recs.to_csv(tmp_path / "recs.csv", index=False)
    truth.to_csv(tmp_path / "truth.csv", index=False)
    history.assign(event_type="purchase").to_csv(tmp_path / "events.csv", index=False)
    out = subprocess.run(
        [sys.executable, str(SCORER), str(tmp_path / "recs.csv"), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shared = {}
    for line in out.strip().splitlines():
        shared.update(json.loads(line))

    ours = _bench().score_published(recs, truth, history)

    names = {"recall": "recall", "ndcg": "ndcg", "hit": "hit_rate",
             "repeat_recall": "recall_repeat", "explore_recall": "recall_new"}  # fmt: skip
    for k in (10, 20):
        for theirs, mine in names.items():
            assert ours[f"{mine}@{k}"] == pytest.approx(shared[f"{theirs}@{k}"], abs=5e-4), (
                theirs,
                k,
            )
    assert ours["users"] == shared["users_scored"] == 4
    assert ours["users_with_recs"] == shared["users_with_recs"] == 3
    # the fixture exercises what matters: a new-item hit and a hit beyond rank 10
    assert ours["recall_new@10"] > 0 and ours["recall@20"] > ours["recall@10"]
