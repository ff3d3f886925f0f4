"""Honest headlines: the demo, the report and the plugin page (which renders the report's body)
compare the ranker with the strongest baseline of the run, not with popularity."""

from __future__ import annotations

import json

import pandas as pd

from recpipe.demo import headline_lines
from recpipe.report import metrics_frame, render_body, strongest_baseline

RANKER = {"ndcg@10": 0.30, "recall@10": 0.40}
BASELINES = {
    "popularity": {"ndcg@10": 0.05, "recall@10": 0.08},
    "personal_top_frequency": {"ndcg@10": 0.26, "recall@10": 0.37},
    "implicit_als": {"ndcg@10": 0.12, "recall@10": 0.20},
}


def test_strongest_baseline_is_the_highest_ndcg():
    assert strongest_baseline(BASELINES) == (
        "personal_top_frequency",
        BASELINES["personal_top_frequency"],
    )
    assert strongest_baseline(BASELINES, "recall@10")[0] == "personal_top_frequency"
    assert strongest_baseline({}) == ("", {})
    assert strongest_baseline({"a": {"ndcg@10": 0.1}, "b": {"ndcg@10": 0.1}})[0] == "a"


def test_demo_headline_is_against_the_strongest_baseline():
    text = headline_lines(RANKER, BASELINES)
    last = text.splitlines()[-1]
    assert "strongest baseline (personal_top_frequency)" in last
    assert "0.3000 vs 0.2600, +15.4%" in last
    assert "popularity" not in last and "6.00x" not in text
    names = [line.split()[0] for line in text.splitlines()[1:-1]]
    assert names == ["ranker", "personal_top_frequency", "implicit_als", "popularity"]


def test_report_metrics_use_the_strongest_baseline_per_model():
    models = pd.DataFrame(
        {
            "model_version": ["m1", "m2"],
            "as_of_date": ["2017-06-30", "2017-07-01"],
            "status": ["champion", "challenger"],
            "validation_metrics": [json.dumps(RANKER)] * 2,
            "baseline_metrics": [
                json.dumps(BASELINES),
                json.dumps({"popularity": {"ndcg@10": 0.31, "recall@10": 0.1}}),
            ],
        }
    )
    frame = metrics_frame(models)
    assert frame["best baseline"].tolist() == ["personal_top_frequency", "popularity"]
    assert frame["best baseline ndcg@10"].tolist() == [0.26, 0.31]
    empty = {k: pd.DataFrame() for k in ("runs", "gate_summary", "gates", "recall", "sample")}
    page = render_body({**empty, "models": models})
    assert "Ranker vs the strongest baseline" in page and "Ranker vs popularity" not in page
