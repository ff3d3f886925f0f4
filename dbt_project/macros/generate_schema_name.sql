{#-
    Use a model's custom schema verbatim (staging, intermediate, features, candidates) instead of
    dbt's default `<target schema>_<custom schema>`: recpipe's Python side reads these exact names.
    Models without a custom schema land in the target schema (analytics).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
