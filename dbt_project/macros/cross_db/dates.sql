{#-
    Date arithmetic that compiles on DuckDB and BigQuery. Timestamps are UTC without time zone;
    a cutoff date c stands for the instant c 00:00:00.
-#}

{% macro add_days(date_expression, days) -%}
    {#- DATE `days` days after `date_expression` (negative goes back). -#}
    cast({{ dbt.dateadd('day', days, date_expression) }} as date)
{%- endmacro %}


{% macro date_to_timestamp(date_expression) -%}
    {#- The instant a date starts (midnight UTC), comparable with event_ts. -#}
    cast({{ date_expression }} as {{ dbt.type_timestamp() }})
{%- endmacro %}


{% macro days_between(start_timestamp, end_timestamp) -%}
    {#- Fractional days from start to end, at one-second resolution (positive when end is later). -#}
    ({{ dbt.datediff(start_timestamp, end_timestamp, 'second') }} / 86400.0)
{%- endmacro %}
