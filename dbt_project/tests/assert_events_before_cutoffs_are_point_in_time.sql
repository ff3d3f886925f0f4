-- Point in time: every event a feature or candidate of cutoff c can see (the view
-- int_events_before_cutoffs, their only way to read events) satisfies
-- c - history_days <= event_ts < c. Fails with each event outside that window.
{%- set history_days = positive_int_var('history_days') %}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

visible_events as (

    select * from {{ ref('int_events_before_cutoffs') }}

),

final as (

    select
        visible_events.as_of_date,
        visible_events.event_id,
        visible_events.event_ts

    from visible_events
    left join cutoffs
        on visible_events.as_of_date = cutoffs.as_of_date
    where
        cutoffs.as_of_date is null
        or visible_events.event_ts >= {{ date_to_timestamp('cutoffs.as_of_date') }}
        or visible_events.event_ts
        < {{ date_to_timestamp(add_days('cutoffs.as_of_date', -history_days)) }}

)

select * from final
