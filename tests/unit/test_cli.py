"""The CLI's promise: exit 0 on success, otherwise one line naming what broke."""

from __future__ import annotations

import argparse

import pytest

from recpipe.cli import main


def test_generate_then_ingest_twice_adds_nothing(recpipe_home, tmp_path, capsys):
    shop = tmp_path / "shop"
    assert (
        main(["generate", "--out", str(shop), "--users", "50", "--items", "30", "--days", "10"])
        == 0
    )
    args = [
        "ingest",
        "--events",
        str(shop / "events.csv"),
        "--items",
        str(shop / "items.csv"),
        "--users",
        str(shop / "users.csv"),
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "raw.events: read" in out and "loaded 0," in out


def test_bad_file_exits_non_zero_with_one_line(recpipe_home, tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_ts\nu1,i1,2026-01-01\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id\ni1\n")
    assert main(["ingest", "--events", str(events), "--items", str(items)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing required column(s) event_type" in err[0]


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["run", "--as-of", "2026-13-01"], "not a date"),
        (["run", "--as-of", "2026-10-01", "--param", "k=ten"], "k must be an integer"),
        (["run", "--as-of", "2026-10-01", "--param", "drop=1"], "KEY one of k, retrain"),
        (["run", "--as-of", "2026-10-01", "--param", "k=0"], "less than the minimum of 1"),
        (["run", "--as-of", "2026-10-01", "--param", "k=201"], "greater than the maximum of 200"),
        (["run", "--as-of", "2026-10-01", "--param", "retrain=sometimes"], "is not one of"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(argv, reason, capsys, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "airflow", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert reason in capsys.readouterr().err
    assert "airflow" not in sys.modules  # refused before Airflow was even imported


def test_param_values_are_checked_against_the_dags_own_schema():
    from recpipe.params import DAG_PARAMS, parse_param

    _, k_schema = DAG_PARAMS["k"]
    assert parse_param(f"k={k_schema['maximum']}") == ("k", k_schema["maximum"])
    for mode in DAG_PARAMS["retrain"][1]["enum"]:
        assert parse_param(f"retrain={mode}") == ("retrain", mode)


def test_param_as_of_is_given_with_as_of(recpipe_home, capsys):
    assert main(["run", "--as-of", "2026-10-01", "--param", "as_of=2026-09-01"]) == 1
    assert "--as-of" in capsys.readouterr().err


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"recpipe {version('recpipe')}"


def test_every_option_of_every_command_says_what_it_means_and_its_default(capsys):
    from recpipe.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {
        "demo",
        "generate",
        "ingest",
        "run",
        "backfill",
        "report",
        "manifest",
    }
    for name, command in commands.choices.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            if action.required:
                assert "(required)" in text
            elif action.default not in (None, False):
                assert f"(default: {action.default})" in text, (name, action.dest)
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    # the top-level help is whole sentences: what recpipe is, its commands, the exit codes
    assert "recpipe: daily top-K recommendations" in text
    assert "a non-zero exit code." in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "k: Recommendations per user (top K). (default: 20; 1..200)" in text
    assert "retrain:" in text and "(default: auto; one of auto|always|never)" in text


def test_backfill_with_end_before_start(recpipe_home, capsys):
    assert main(["backfill", "--start", "2026-10-02", "--end", "2026-10-01"]) == 1
    assert "before --start" in capsys.readouterr().err
