"""What the DAG file does when parsed in a deployment: it reads the manifest the explicit build
step wrote (a missing one is an import error naming the step) and hands the first task the
settings it was parsed with."""

from __future__ import annotations

from recpipe.settings import DAGS_DIR, load_settings


def _parse():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_a_missing_manifest_is_an_import_error_naming_the_build_step(monkeypatch, tmp_path):
    missing = tmp_path / "manifest.json"
    monkeypatch.setenv("RECPIPE_DBT_MANIFEST", str(missing))
    bag = _parse()
    assert "recpipe_daily" not in bag.dags
    (error,) = bag.import_errors.values()
    assert f"dbt manifest {missing} is missing" in error
    assert "build it with `recpipe manifest`" in error
    assert not missing.exists()


def test_the_first_task_gets_the_parse_time_settings():
    bag = _parse()
    assert bag.import_errors == {}
    resolve = bag.dags["recpipe_daily"].get_task("run__resolve_params")
    assert list(resolve.op_args) == [load_settings().parse_time_settings()]


def test_parsing_the_dag_file_imports_no_data_library():
    """Every task process of a deployment parses the DAG file first, the 77 dbt sensors too:
    pandas and numpy (~0.7 s of imports) are for the stages that use them."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_DIR)!r})\n"
        "assert bag.import_errors == {}, bag.import_errors\n"
        "assert 'recpipe_daily' in bag.dags\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'duckdb', 'lightgbm') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
