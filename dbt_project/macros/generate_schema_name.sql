{#-
    Use a model's custom schema verbatim (staging, intermediate, features, candidates) instead of
    dbt's default `<target schema>_<custom schema>`: recpipe's Python side reads these exact names.
    Models without a custom schema land in the target schema (analytics).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ dataset_prefix() }}{{ target.schema }}
    {%- else -%}
        {{ dataset_prefix() }}{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}


{% macro dataset_prefix() -%}
    {#-
        On BigQuery every recpipe dataset may carry a prefix (RECPIPE_BQ_DATASET_PREFIX, e.g.
        `dev_` or one per test), the same one recpipe/warehouse.py puts in front of its names.
    -#}
    {%- if target.type == 'bigquery' -%}
        {{ env_var('RECPIPE_BQ_DATASET_PREFIX', '') }}
    {%- endif -%}
{%- endmacro %}
