"""The dbt manifest that cosmos renders the DAG's dbt task group from.

Rendering from a manifest keeps DAG parsing fast (no ``dbt ls`` subprocess on every parse).
The manifest is rebuilt with ``dbt parse`` whenever a file of the dbt project is newer than it.
"""

from __future__ import annotations

from pathlib import Path

from recpipe.dbt_cli import run_dbt
from recpipe.settings import DBT_PROJECT_DIR

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
_SOURCES = ("models", "macros", "tests", "dbt_project.yml", "profiles.yml")
# Structure only: the real as-of date is passed by each run.
_PARSE_AS_OF = "2000-01-01"


def _newest_source_mtime(project: Path) -> float:
    newest = 0.0
    for name in _SOURCES:
        path = project / name
        files = [path] if path.is_file() else path.rglob("*") if path.exists() else []
        for file in files:
            newest = max(newest, file.stat().st_mtime)
    return newest


def ensure_manifest(project: Path = DBT_PROJECT_DIR) -> Path:
    """Return the path of an up-to-date manifest, running ``dbt parse`` if it is stale."""
    manifest = project / "target" / "manifest.json"
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(project):
        return manifest
    # raises DbtCommandFailed (a RuntimeError) when the project does not parse
    run_dbt("parse", as_of=_PARSE_AS_OF, extra_args=("--target", "duckdb"), project_dir=project)
    if not manifest.exists():
        raise RuntimeError(f"dbt parse wrote no {manifest}")
    return manifest
