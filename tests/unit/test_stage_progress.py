"""The lines ``recpipe run`` prints as stages start and end (``StageProgress``, an Airflow
listener): one per stage, and one per user shard of a mapped stage, saying which."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import pytest

from recpipe.airflow_runner import StageProgress
from recpipe.settings import load_settings


def _instance(task_id: str, map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(task_id=task_id, run_id="manual__1", map_index=map_index)


@pytest.mark.parametrize("shards", [1, 3])
def test_each_shard_of_a_mapped_stage_says_which_it_was(shards):
    lines: list[str] = []
    settings = dataclasses.replace(load_settings(), user_shards=shards)
    progress = StageProgress(lines.append, settings)
    for index in range(shards):
        progress.on_task_instance_running(None, _instance("score__rank_candidates", index))
    for index in range(shards - 1):
        progress.on_task_instance_success(None, _instance("score__rank_candidates", index))
    progress.on_task_instance_failed(
        None, _instance("score__rank_candidates", shards - 1), RuntimeError("disk full\nmore")
    )
    progress.on_task_instance_running(None, _instance("publish__recommendations"))
    progress.on_task_instance_success(None, _instance("publish__recommendations"))

    assert lines[0] == "  score__rank_candidates ..."  # a stage starts once, whatever its shards
    ends = lines[1 : shards + 1]
    if shards == 1:
        assert re.fullmatch(r"  score__rank_candidates: FAILED after \d+\.\ds: disk full", ends[0])
    else:
        for index, line in enumerate(ends[:-1]):
            assert re.fullmatch(
                rf"  score__rank_candidates \(shard {index + 1} of 3\): done in \d+\.\ds", line
            )
        assert re.fullmatch(
            r"  score__rank_candidates \(shard 3 of 3\): FAILED after \d+\.\ds: disk full", ends[-1]
        )
    assert re.fullmatch(r"  publish__recommendations: done in \d+\.\ds", lines[-1])
