{#-
    The run's vars are user input. `as_of` is checked against a strict pattern and only the
    validated 'YYYY-MM-DD' text is ever put into SQL; the integer vars are checked and passed on
    as Python ints. Anything else fails the run with a compiler error before SQL is sent.
-#}

{% macro validated_as_of() -%}
    {#- Returns the `as_of` var as a validated 'YYYY-MM-DD' string, or none while parsing. -#}
    {%- set value = var('as_of', none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "recpipe: the var `as_of` is required, as 'YYYY-MM-DD' "
                ~ "(e.g. --vars '{as_of: \"2026-10-01\"}')."
            ) }}
        {%- endif -%}
        {{ return(none) }}
    {%- endif -%}
    {#- YAML turns an unquoted 2026-10-01 into a date: its str() is the same ISO text. -#}
    {%- set text = value | string -%}
    {%- set match = modules.re.fullmatch('([0-9]{4})-([0-9]{2})-([0-9]{2})', text) -%}
    {%- if not match -%}
        {{ exceptions.raise_compiler_error(
            "recpipe: the var `as_of` must be a date as 'YYYY-MM-DD', got " ~ (text[:40] | tojson) ~ "."
        ) }}
    {%- endif -%}
    {%- set year = match.group(1) | int -%}
    {%- set month = match.group(2) | int -%}
    {%- set day = match.group(3) | int -%}
    {%- set is_leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 -%}
    {%- set days_in_month = [31, 29 if is_leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
    {%- if year < 1970 or month < 1 or month > 12 or day < 1 or day > days_in_month[month - 1] -%}
        {{ exceptions.raise_compiler_error(
            "recpipe: the var `as_of` is not a valid calendar date: " ~ (text | tojson) ~ "."
        ) }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}


{% macro as_of_date() -%}
    {#- SQL expression of the run's as-of date (the serve cutoff), typed DATE. -#}
    {%- set text = validated_as_of() -%}
    {%- if text is none -%}
        {#- Parsing only (execute is false): the SQL is never run. -#}
        {%- set text = '1970-01-01' -%}
    {%- endif -%}
    cast('{{ text }}' as date)
{%- endmacro %}


{% macro positive_int_var(name, maximum=100000) -%}
    {#- Returns var(name) as a positive Python int (at most `maximum`), else fails the run. -#}
    {%- set value = var(name) -%}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.fullmatch('[0-9]{1,10}', text) or (text | int) < 1 or (text | int) > maximum -%}
        {{ exceptions.raise_compiler_error(
            "recpipe: the var `" ~ name ~ "` must be a whole number between 1 and " ~ maximum
            ~ ", got " ~ (text[:40] | tojson) ~ "."
        ) }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}


{% macro validate_run_vars() -%}
    {#-
        on-run-start hook: fail a `dbt run` / `dbt build` before anything is built when a var is
        missing or malformed. Emits no SQL. Other commands (parse, ls, docs, test) do not need
        `as_of`; models that use it still validate it when they compile.
    -#}
    {%- if execute and flags.WHICH in ['run', 'build'] -%}
        {%- do validated_as_of() -%}
        {%- for name in ['label_days', 'active_days', 'candidate_depth', 'history_days'] -%}
            {%- do positive_int_var(name) -%}
        {%- endfor -%}
        {%- do positive_int_var('max_labelled_users', maximum=1000000000) -%}
    {%- endif -%}
{%- endmacro %}
