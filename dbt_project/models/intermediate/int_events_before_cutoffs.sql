{#-
    The point-in-time gate: every event a feature or candidate of cutoff c may use, i.e. with
    c - history_days <= event_ts < c. Downstream models read events only through this view, so
    the rule lives in one place (tested by assert_events_before_cutoffs_are_point_in_time).
    Ephemeral (inlined like a view, but with this run's cutoffs): no relation shared between
    runs of different dates.
-#}
{{ config(materialized='ephemeral') }}

{%- set history_days = positive_int_var('history_days') -%}
{%- set history_start = date_to_timestamp(add_days('cutoffs.as_of_date', -history_days)) -%}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

events as (

    select * from {{ ref('stg_shop__events') }}

),

events_in_history as (

    select
        cutoffs.as_of_date,
        {{ date_to_timestamp('cutoffs.as_of_date') }} as cutoff_ts,
        events.event_id,
        events.user_id,
        events.item_id,
        events.event_type,
        events.event_ts,
        events.event_date,
        events.session_id,
        events.quantity,
        events.price

    from cutoffs
    inner join events
        on events.event_ts < {{ date_to_timestamp('cutoffs.as_of_date') }}
        and events.event_ts >= {{ history_start }}

),

final as (

    select
        as_of_date,
        event_id,
        user_id,
        item_id,
        event_type,
        event_ts,
        event_date,
        session_id,
        quantity,
        price,
        {{ event_type_weight('event_type') }} as event_weight,
        -- age of the event at the cutoff, in days (> 0)
        {{ days_between('event_ts', 'cutoff_ts') }} as age_days,
        event_ts >= {{ date_to_timestamp(add_days('as_of_date', -1)) }} as is_within_1_day,
        event_ts >= {{ date_to_timestamp(add_days('as_of_date', -7)) }} as is_within_7_days,
        event_ts >= {{ date_to_timestamp(add_days('as_of_date', -14)) }} as is_within_14_days,
        event_ts >= {{ date_to_timestamp(add_days('as_of_date', -30)) }} as is_within_30_days

    from events_in_history

)

select * from final
