"""The lint venv (requirements-sqlfluff.txt) renders the dbt models with the same dbt and DuckDB
as the pipeline's venv (requirements.txt): a package both files pin has one version."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(file: str) -> dict[str, str]:
    lines = (ROOT / file).read_text().splitlines()
    pairs = (line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    return {name.strip().lower().replace("_", "-"): version.strip() for name, version in pairs}


def test_the_lint_venv_pins_dbt_and_duckdb_as_the_pipeline_does():
    lint, pipeline = pins("requirements-sqlfluff.txt"), pins("requirements.txt")
    for package in ("dbt-core", "dbt-duckdb", "dbt-adapters", "duckdb"):
        assert lint[package] == pipeline[package], package
    # only what sqlfluff-templater-dbt's pins force may differ (click < 8.5), and that is said
    differing = {p for p in lint.keys() & pipeline.keys() if lint[p] != pipeline[p]}
    assert differing <= {"click"}, differing
