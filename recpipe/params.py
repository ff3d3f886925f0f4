"""The params of ``recpipe_daily``: one definition, used by the DAG (Airflow ``Param``s, shown
in the trigger form) and by ``recpipe run --param`` (validated before Airflow starts)."""

from __future__ import annotations

from typing import Any

# The limits of the params, which recpipe.runs.resolve_run enforces too (this module imports
# nothing heavy: the command line checks --param without loading pandas & co).
MAX_K = 200
RETRAIN_MODES = ("auto", "always", "never")
# retrain=auto reuses a champion trained for a date at most this many days before the run's
AUTO_RETRAIN_DAYS = 7

# name -> (default, JSON schema with a description), as Airflow's Param takes them
DAG_PARAMS: dict[str, tuple[Any, dict[str, Any]]] = {
    "k": (
        20,
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_K,
            "description": "Recommendations per user (top K).",
        },
    ),
    "retrain": (
        "auto",
        {
            "type": "string",
            "enum": list(RETRAIN_MODES),
            "description": f"auto: reuse a champion trained in the last {AUTO_RETRAIN_DAYS} days, "
            "else train; always: train; never: use the champion.",
        },
    ),
    "as_of": (
        None,
        {
            "type": ["null", "string"],
            "format": "date",
            "description": "Optional as-of date YYYY-MM-DD for manual runs; "
            "defaults to the run's logical date.",
        },
    ),
}


class ParamValueError(ValueError):
    """A param value its schema refuses (one line naming the param)."""


def parse_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line as a param and a value its schema accepts.

    Integers are parsed for integer params; everything is then validated against the same JSON
    schema Airflow validates the DAG's params with (jsonschema, with format checks).
    """
    import jsonschema

    key, sep, value = text.partition("=")
    if not sep or key not in DAG_PARAMS:
        raise ParamValueError(f"--param takes KEY=VALUE with KEY one of {', '.join(DAG_PARAMS)}")
    _, schema = DAG_PARAMS[key]
    parsed: Any = value
    if "integer" in schema["type"]:
        try:
            parsed = int(value)
        except ValueError as err:
            raise ParamValueError(f"{key} must be an integer, got {value!r}") from err
    try:
        jsonschema.validate(parsed, schema, format_checker=jsonschema.FormatChecker())
    except jsonschema.ValidationError as err:
        raise ParamValueError(f"{key}={value}: {err.message}") from err
    return key, parsed


def describe_params(exclude: tuple[str, ...] = ()) -> str:
    """One line per param for ``--help``: name, meaning, default and allowed values."""
    lines = ["params (--param KEY=VALUE):"]
    for name, (default, schema) in DAG_PARAMS.items():
        if name in exclude:
            continue
        allowed = ""
        if "enum" in schema:
            allowed = f"; one of {'|'.join(schema['enum'])}"
        elif "minimum" in schema:
            allowed = f"; {schema['minimum']}..{schema['maximum']}"
        lines.append(f"  {name}: {schema['description']} (default: {default}{allowed})")
    return "\n".join(lines)
