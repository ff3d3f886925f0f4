{#-
    Item features at each cutoff, from events before it (int_events_before_cutoffs). One row per
    catalog item per cutoff, whether or not it had events. Caveat: price and is_available come
    from the current catalog snapshot (the shop does not keep their history), so for the train
    and valid cutoffs they are as of the last ingest, not as of the cutoff.
-#}
{{ config(**incremental_by_cutoff(['item_id'])) }}
{%- set windows = [
    ('1d', 'is_within_1_day'),
    ('7d', 'is_within_7_days'),
    ('30d', 'is_within_30_days'),
    ('history', 'true'),
] -%}
{%- set count_columns = [] -%}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

events as (

    select * from {{ ref('int_events_before_cutoffs') }}

),

item_activity as (

    select
        as_of_date,
        item_id,
        {%- for window_name, window_flag in windows %}
        {%- for event_type in event_types() %}
        {%- do count_columns.append('item_' ~ event_type ~ '_count_' ~ window_name) %}
        sum(case when {{ window_flag }} and event_type = '{{ event_type }}' then 1 else 0 end)
            as item_{{ event_type }}_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.append('item_event_count_' ~ window_name) %}
        sum(case when {{ window_flag }} then 1 else 0 end) as item_event_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.extend([
            'item_event_count_previous_7d',
            'item_purchased_quantity_history',
            'item_distinct_user_count_30d',
            'item_distinct_user_count_history',
        ]) %}
        sum(case when is_within_14_days and not is_within_7_days then 1 else 0 end)
            as item_event_count_previous_7d,
        sum(case when event_type = 'purchase' then quantity else 0 end)
            as item_purchased_quantity_history,
        count(distinct case when is_within_30_days then user_id end)
            as item_distinct_user_count_30d,
        count(distinct user_id) as item_distinct_user_count_history,
        max(age_days) as item_days_since_first_event,
        min(age_days) as item_days_since_last_event,
        avg(case when event_type = 'purchase' then price end) as item_avg_purchase_price

    from events
    group by as_of_date, item_id

),

purchases_per_buyer as (

    select
        as_of_date,
        item_id,
        user_id,
        count(*) as purchase_count

    from events
    where event_type = 'purchase'
    group by as_of_date, item_id, user_id

),

item_buyers as (

    select
        as_of_date,
        item_id,
        count(*) as buyer_count,
        sum(case when purchase_count >= 2 then 1 else 0 end) as repeat_buyer_count

    from purchases_per_buyer
    group by as_of_date, item_id

),

catalog_at_cutoffs as (

    select
        cutoffs.as_of_date,
        items.item_id,
        items.price,
        items.is_available

    from cutoffs
    cross join items

),

final as (

    select
        catalog_at_cutoffs.as_of_date,
        catalog_at_cutoffs.item_id,
        {%- for column in count_columns %}
        cast(coalesce(item_activity.{{ column }}, 0) as {{ dbt.type_bigint() }}) as {{ column }},
        {%- endfor %}
        -- log of (last 7 days + 1) / (the 7 days before + 1): > 0 rising, < 0 falling
        ln(
            (coalesce(item_activity.item_event_count_7d, 0) + 1.0)
            / (coalesce(item_activity.item_event_count_previous_7d, 0) + 1.0)
        ) as item_trend_7d,
        {{ safe_divide(
            'item_activity.item_purchase_count_history',
            'item_activity.item_view_count_history'
        ) }}
            as item_purchase_view_conversion,
        {{ safe_divide(
            'item_activity.item_add_to_cart_count_history',
            'item_activity.item_view_count_history'
        ) }}
            as item_add_to_cart_view_conversion,
        cast(coalesce(item_buyers.buyer_count, 0) as {{ dbt.type_bigint() }})
            as item_buyer_count_history,
        {{ safe_divide('item_buyers.repeat_buyer_count', 'item_buyers.buyer_count') }}
            as item_repeat_purchase_rate,
        item_activity.item_days_since_first_event,
        item_activity.item_days_since_last_event,
        item_activity.item_avg_purchase_price,
        catalog_at_cutoffs.price as item_price,
        case when catalog_at_cutoffs.is_available then 1 else 0 end as item_is_available

    from catalog_at_cutoffs
    left join item_activity
        on catalog_at_cutoffs.as_of_date = item_activity.as_of_date
        and catalog_at_cutoffs.item_id = item_activity.item_id
    left join item_buyers
        on catalog_at_cutoffs.as_of_date = item_buyers.as_of_date
        and catalog_at_cutoffs.item_id = item_buyers.item_id

)

select * from final
