{#-
    Fails with each row whose item is missing from the catalog `to` or is not available there:
    recpipe never recommends an item the shop cannot sell.
-#}
{% test is_available_catalog_item(model, column_name, to, field='item_id', available_field='is_available') %}

with child as (

    {#- a CTE, not `{{ model }} as child`: with a `where` config the model is an aliased subquery #}
    select * from {{ model }}

)

select child.*
from child
left join {{ to }} as catalog
    on child.{{ column_name }} = catalog.{{ field }}
where
    child.{{ column_name }} is not null
    and (catalog.{{ field }} is null or not coalesce(catalog.{{ available_field }}, false))

{% endtest %}
