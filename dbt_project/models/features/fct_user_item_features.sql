{#-
    User-item features at each cutoff, from events before it (int_events_before_cutoffs). One
    row per (active user, catalog item) pair with at least one event in the history window;
    pairs of users outside int_active_users and on items missing from the catalog are left out
    (they are never candidates).
-#}
{{ config(**incremental_by_cutoff(['user_id', 'item_id'])) }}
{%- set windows = [
    ('7d', 'is_within_7_days'),
    ('30d', 'is_within_30_days'),
    ('history', 'true'),
] -%}
{%- set count_columns = [] -%}

with

active_users as (

    select * from {{ ref('int_active_users') }}
    where {{ is_this_run_cutoff() }}

),

events as (

    select events.*
    from {{ ref('int_events_before_cutoffs') }} as events
    inner join active_users
        on events.as_of_date = active_users.as_of_date
        and events.user_id = active_users.user_id

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

catalog_events as (

    select
        events.*,
        items.category_top_level

    from events
    inner join items
        on events.item_id = items.item_id

),

pair_activity as (

    select
        as_of_date,
        user_id,
        item_id,
        {%- for window_name, window_flag in windows %}
        {%- for event_type in event_types() %}
        {%- do count_columns.append('ui_' ~ event_type ~ '_count_' ~ window_name) %}
        sum(case when {{ window_flag }} and event_type = '{{ event_type }}' then 1 else 0 end)
            as ui_{{ event_type }}_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.append('ui_event_count_' ~ window_name) %}
        sum(case when {{ window_flag }} then 1 else 0 end) as ui_event_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.append('ui_purchased_quantity_history') %}
        sum(case when event_type = 'purchase' then quantity else 0 end)
            as ui_purchased_quantity_history,
        min(age_days) as ui_days_since_last_event,
        max(age_days) as ui_days_since_first_event,
        min(case when event_type = 'purchase' then age_days end) as ui_days_since_last_purchase

    from catalog_events
    group by as_of_date, user_id, item_id

),

user_category_events as (

    select
        as_of_date,
        user_id,
        category_top_level,
        count(*) as event_count

    from catalog_events
    where category_top_level is not null
    group by as_of_date, user_id, category_top_level

),

user_categorised_events as (

    select
        as_of_date,
        user_id,
        sum(event_count) as event_count

    from user_category_events
    group by as_of_date, user_id

),

user_purchase_prices as (

    -- all of the user's purchases, also of items no longer in the catalog
    select
        as_of_date,
        user_id,
        avg(price) as avg_purchase_price

    from events
    where event_type = 'purchase'
    group by as_of_date, user_id

),

final as (

    select
        pair_activity.as_of_date,
        pair_activity.user_id,
        pair_activity.item_id,
        {%- for column in count_columns %}
        cast(pair_activity.{{ column }} as {{ dbt.type_bigint() }}) as {{ column }},
        {%- endfor %}
        pair_activity.ui_days_since_last_event,
        pair_activity.ui_days_since_first_event,
        pair_activity.ui_days_since_last_purchase,
        -- share of the user's categorised events that fall in this item's top-level category
        {{ safe_divide('user_category_events.event_count', 'user_categorised_events.event_count') }}
            as ui_category_affinity,
        {{ safe_divide('items.price', 'user_purchase_prices.avg_purchase_price') }}
            as ui_price_relative_to_user_avg_purchase_price

    from pair_activity
    inner join items
        on pair_activity.item_id = items.item_id
    left join user_category_events
        on pair_activity.as_of_date = user_category_events.as_of_date
        and pair_activity.user_id = user_category_events.user_id
        and items.category_top_level = user_category_events.category_top_level
    left join user_categorised_events
        on pair_activity.as_of_date = user_categorised_events.as_of_date
        and pair_activity.user_id = user_categorised_events.user_id
    left join user_purchase_prices
        on pair_activity.as_of_date = user_purchase_prices.as_of_date
        and pair_activity.user_id = user_purchase_prices.user_id

)

select * from final
{{ read_order() }}
