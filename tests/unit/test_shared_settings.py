"""Settings that dbt and the Python stages share are owned by recpipe.settings.Settings and
passed to dbt as vars on every run; the copies dbt keeps for a hand-run `dbt build`
(dbt_project.yml's vars, macros/shop.sql's event weights) must say the same."""

from __future__ import annotations

import dataclasses
import os
import re

import yaml

from recpipe.settings import DBT_PROJECT_DIR, Settings, load_settings
from recpipe.tables import EVENT_TYPES, EVENT_WEIGHTS


def test_every_shared_setting_has_one_default_in_settings_load_settings_and_dbt(monkeypatch):
    for name in [n for n in os.environ if n.startswith("RECPIPE_")]:
        monkeypatch.delenv(name)
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    loaded = load_settings()
    shared = loaded.dbt_vars()
    dbt_vars = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert set(shared) == set(dbt_vars)  # every dbt var but as_of (per run) comes from Settings
    for name, value in shared.items():
        assert value == defaults[name] == dbt_vars[name], name


def test_event_weights_agree_with_dbt():
    macro = (DBT_PROJECT_DIR / "macros" / "shop.sql").read_text()
    body = macro[
        macro.index("macro event_type_weight") : macro.index(
            "endmacro", macro.index("macro event_type_weight")
        )
    ]
    in_dbt = {t: float(w) for t, w in re.findall(r"when '(\w+)' then (\d+(?:\.\d+)?)", body)}
    assert in_dbt == EVENT_WEIGHTS
    assert set(EVENT_WEIGHTS) == set(EVENT_TYPES)
