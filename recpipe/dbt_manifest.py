"""The dbt manifest that cosmos renders the DAG's dbt task group from.

Rendering from a manifest keeps DAG parsing fast (no ``dbt ls`` subprocess on every parse). The
manifest is built by an explicit step, ``recpipe manifest`` (``make manifest``; ``recpipe
run``/``backfill``/``demo``, ``make airflow`` and the tests run it before Airflow parses the DAG),
never while the DAG file is parsed: the DAG file only calls :func:`require_manifest`, and a
missing or stale manifest is an import error naming that step.

A manifest records a hash of the dbt sources it was built from (in its ``metadata``), so a
manifest older than the dbt project is recognised wherever the package is installed (file times
do not survive a wheel install or a copy to a DAGs bucket).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from recpipe.settings import DBT_PROJECT_DIR

log = logging.getLogger(__name__)

BUILD_STEP = "recpipe manifest"
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
_SOURCES = ("models", "macros", "tests", "dbt_project.yml", "profiles.yml")
_DIGEST_KEY = "recpipe_sources_sha256"
# Structure only: the real as-of date is passed by each run.
_PARSE_AS_OF = "2000-01-01"


class ManifestError(RuntimeError):
    """The manifest is missing, unreadable or built from other dbt sources."""


def sources_digest(project: Path = DBT_PROJECT_DIR) -> str:
    """SHA-256 over the relative path and content of every dbt source file of ``project``."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = project / name
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.exists() else []
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(file.relative_to(project).as_posix().encode() + b"\0")
                digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def _recorded_digest(manifest: Path) -> str | None:
    """The sources digest a manifest was built from; None if it is missing or unreadable."""
    try:
        with manifest.open(encoding="utf-8") as handle:
            return json.load(handle).get("metadata", {}).get(_DIGEST_KEY)
    except (OSError, ValueError):
        return None


def build_manifest(manifest: Path = MANIFEST, project: Path = DBT_PROJECT_DIR) -> Path:
    """Run ``dbt parse`` on ``project`` and write its manifest to ``manifest`` atomically (dbt's
    target and log folders are a temporary directory, so the project may be read-only).

    Raises DbtCommandFailed (a RuntimeError) when the project does not parse.
    """
    from recpipe.dbt_cli import run_dbt

    digest = sources_digest(project)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recpipe-dbt-parse-") as work:
        run_dbt(
            "parse",
            as_of=_PARSE_AS_OF,
            extra_args=("--target", "duckdb"),
            project_dir=project,
            work_dir=Path(work),
        )
        built = Path(work) / "target" / "manifest.json"
        if not built.exists():
            raise ManifestError(f"dbt parse wrote no manifest.json for {project}")
        content = json.loads(built.read_text(encoding="utf-8"))
    content.setdefault("metadata", {})[_DIGEST_KEY] = digest
    partial = manifest.with_name(f".{manifest.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(content), encoding="utf-8")
    os.replace(partial, manifest)
    log.info("wrote dbt manifest %s", manifest)
    return manifest


def manifest_is_current(manifest: Path = MANIFEST, project: Path = DBT_PROJECT_DIR) -> bool:
    """True when ``manifest`` exists and was built from ``project``'s current sources."""
    return _recorded_digest(manifest) == sources_digest(project)


def ensure_manifest(manifest: Path = MANIFEST, project: Path = DBT_PROJECT_DIR) -> Path:
    """The explicit build step: build ``manifest`` unless it is current; return its path."""
    if manifest_is_current(manifest, project):
        return manifest
    return build_manifest(manifest, project)


def require_manifest(manifest: Path = MANIFEST, project: Path = DBT_PROJECT_DIR) -> Path:
    """What the DAG file calls while it is parsed: the manifest's path, or ManifestError (one
    line naming the build step) when it is missing or was built from other dbt sources.
    Never runs dbt."""
    recorded = _recorded_digest(manifest)
    if recorded is None:
        raise ManifestError(
            f"dbt manifest {manifest} is missing or unreadable: build it with `{BUILD_STEP}` "
            "(make manifest) before Airflow parses the DAG"
        )
    if recorded != sources_digest(project):
        raise ManifestError(
            f"dbt manifest {manifest} was built from other dbt sources than {project}: "
            f"rebuild it with `{BUILD_STEP}` (make manifest)"
        )
    return manifest
