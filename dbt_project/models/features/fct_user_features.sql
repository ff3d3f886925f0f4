{#-
    User features at each cutoff, from events before it (int_events_before_cutoffs). One row per
    active user; counts are 0 and "days since" / averages / ratios are NULL when there is
    nothing to measure (e.g. a log of purchases only has no views to convert).
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set windows = [
    ('1d', 'is_within_1_day'),
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

    select * from {{ ref('int_events_before_cutoffs') }}

),

user_activity as (

    select
        as_of_date,
        user_id,
        {%- for window_name, window_flag in windows %}
        {%- for event_type in event_types() %}
        {%- do count_columns.append('user_' ~ event_type ~ '_count_' ~ window_name) %}
        sum(case when {{ window_flag }} and event_type = '{{ event_type }}' then 1 else 0 end)
            as user_{{ event_type }}_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.append('user_event_count_' ~ window_name) %}
        sum(case when {{ window_flag }} then 1 else 0 end) as user_event_count_{{ window_name }},
        {%- endfor %}
        {%- do count_columns.extend([
            'user_purchased_quantity_history',
            'user_distinct_item_count_30d',
            'user_distinct_item_count_history',
            'user_session_count_30d',
            'user_session_count_history',
            'user_active_day_count_30d',
        ]) %}
        sum(case when event_type = 'purchase' then quantity else 0 end)
            as user_purchased_quantity_history,
        count(distinct case when is_within_30_days then item_id end)
            as user_distinct_item_count_30d,
        count(distinct item_id) as user_distinct_item_count_history,
        count(distinct case when is_within_30_days then session_id end) as user_session_count_30d,
        count(distinct session_id) as user_session_count_history,
        count(distinct case when is_within_30_days then event_date end)
            as user_active_day_count_30d,
        min(age_days) as user_days_since_last_event,
        max(age_days) as user_days_since_first_event,
        min(case when event_type = 'purchase' then age_days end) as user_days_since_last_purchase,
        avg(case when event_type = 'purchase' then price end) as user_avg_purchase_price

    from events
    group by as_of_date, user_id

),

final as (

    select
        active_users.as_of_date,
        active_users.user_id,
        {%- for column in count_columns %}
        cast(coalesce(user_activity.{{ column }}, 0) as {{ dbt.type_bigint() }}) as {{ column }},
        {%- endfor %}
        user_activity.user_days_since_last_event,
        user_activity.user_days_since_first_event,
        user_activity.user_days_since_last_purchase,
        user_activity.user_avg_purchase_price,
        {{ safe_divide(
            'user_activity.user_purchase_count_history',
            'user_activity.user_view_count_history'
        ) }}
            as user_purchase_view_conversion,
        {{ safe_divide(
            'user_activity.user_add_to_cart_count_history',
            'user_activity.user_view_count_history'
        ) }}
            as user_add_to_cart_view_conversion,
        {{ safe_divide(
            'user_activity.user_purchase_count_history',
            'user_activity.user_add_to_cart_count_history'
        ) }}
            as user_purchase_add_to_cart_conversion

    from active_users
    left join user_activity
        on active_users.as_of_date = user_activity.as_of_date
        and active_users.user_id = user_activity.user_id

)

select * from final
{{ read_order() }}
