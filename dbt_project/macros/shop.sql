{#- The shop's business constants, in one place. -#}

{% macro event_types() -%}
    {{ return(['view', 'add_to_cart', 'purchase']) }}
{%- endmacro %}


{% macro event_type_weight(event_type_column) -%}
    {#- Strength of an event as interest in its item: a purchase says more than a view. -#}
    case {{ event_type_column }}
        when 'purchase' then 5
        when 'add_to_cart' then 3
        when 'view' then 1
        else 0
    end
{%- endmacro %}


{% macro event_type_label(event_type_column) -%}
    {#- Graded relevance of one labelled event: purchase 3, add_to_cart 2, view 1. -#}
    case {{ event_type_column }}
        when 'purchase' then 3
        when 'add_to_cart' then 2
        when 'view' then 1
    end
{%- endmacro %}


{% macro top_level_category(category_column) -%}
    {#- 'grocery/dairy/milk' -> 'grocery'; NULL or '' -> NULL. -#}
    nullif(trim({{ dbt.split_part(category_column, "'/'", 1) }}), '')
{%- endmacro %}
