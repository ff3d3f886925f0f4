{% macro type_double() -%}
    {#- 64-bit float. dbt.type_float() is a 32-bit FLOAT on DuckDB. -#}
    {{ return(adapter.dispatch('type_double', 'recpipe')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double{%- endmacro %}

{% macro bigquery__type_double() -%}float64{%- endmacro %}


{% macro safe_divide(numerator, denominator) -%}
    {#- numerator / denominator as a double, NULL when the denominator is 0 or NULL. -#}
    (cast({{ numerator }} as {{ type_double() }}) / nullif({{ denominator }}, 0))
{%- endmacro %}
