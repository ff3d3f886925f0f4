{#-
    Multi-column relationships: fails with each row of the model whose `columns` values do not
    appear together on a row of `to` (e.g. a candidate for a user who is not active at that
    cutoff). Rows with a NULL in any of the columns are not checked.
-#}
{% test relationships_composite(model, to, columns) %}

with child as (

    {#- a CTE, not `{{ model }} as child`: with a `where` config the model is an aliased subquery #}
    select * from {{ model }}

)

select child.*
from child
where
    {% for column in columns -%}
    child.{{ column }} is not null
    {% if not loop.last %}and {% endif %}
    {%- endfor %}
    and not exists (
        select 1
        from {{ to }} as parent
        where
            {% for column in columns -%}
            parent.{{ column }} = child.{{ column }}
            {% if not loop.last %}and {% endif %}
            {%- endfor %}
    )

{% endtest %}
