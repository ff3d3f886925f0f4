"""The candidate-source registry is the one list: a source built or written anywhere but missing
from it (never used by the ranker) fails here, and so does a registered source nothing builds."""

from __future__ import annotations

import json
from pathlib import Path

from recpipe import candidates_python, sources
from recpipe.dbt_manifest import require_manifest


def test_every_cand_model_of_the_dbt_manifest_is_a_registered_sql_source_and_back():
    manifest = json.loads(require_manifest().read_text())
    models = {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["name"].startswith("cand_")
    }
    sql = {s.table for s in sources.SOURCES if s.kind == "sql"}
    assert models == sql, (models - sql, sql - models)
    python = {s.table for s in sources.PYTHON_SOURCES}
    assert not python & models  # a Python source never shadows a dbt model's table


def test_every_python_candidate_function_is_called_by_one_registered_source():
    called = {
        name
        for source in sources.PYTHON_SOURCES
        for name in source.generate.__code__.co_names
        if name.endswith("_candidates")
    }
    assert called == set(candidates_python.__all__)


def test_names_and_baselines_are_unique_and_the_ranker_reads_the_registry():
    assert len(set(sources.NAMES)) == len(sources.NAMES)
    baselines = [s.baseline for s in sources.SOURCES if s.baseline]
    assert len(set(baselines)) == len(baselines)
    assert "personal_top_frequency" not in baselines  # measured by its own SQL, not a source


def test_no_module_keeps_its_own_list_of_sources():
    root = Path(sources.__file__).parent
    for path in [*root.glob("*.py"), *(root.parent / "bench").glob("*.py")]:
        if path.name != "sources.py":
            text = path.read_text()
            assert '"covisitation_purchase"' not in text, path
            assert "'covisitation_purchase'" not in text, path
