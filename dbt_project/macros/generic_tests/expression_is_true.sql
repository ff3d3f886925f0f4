{#-
    Fails with each row where `expression` is false. With a column, the expression is appended
    to it (`column_name: rank`, `expression: "between 1 and 50"`). NULL counts as a failure only
    when `null_is_failure` is true (default false: use not_null for that).
-#}
{% test expression_is_true(model, expression, column_name=none, null_is_failure=false) %}

{%- set condition = (column_name ~ ' ' ~ expression) if column_name else expression -%}

select *
from {{ model }}
where
    {%- if null_is_failure %}
    not coalesce({{ condition }}, false)
    {%- else %}
    not ({{ condition }})
    {%- endif %}

{% endtest %}
