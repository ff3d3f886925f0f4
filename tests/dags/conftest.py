"""The DAG file never runs dbt while parsed: build its manifest (explicitly) before the tests
here parse it, as `make test` and `recpipe run` do."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    from recpipe.dbt_manifest import ensure_manifest
    from recpipe.settings import load_settings

    return ensure_manifest(load_settings().dbt_manifest)
