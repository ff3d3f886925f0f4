-- Point in time, end to end: recount each cutoff's user-item events of its active users
-- (int_active_users) straight from staging with c - history_days <= event_ts < c and compare
-- with fct_user_item_features. An event at or after the cutoff leaking into a feature (or a
-- pair missing or invented) makes the counts or the pairs differ. Fails with each disagreeing
-- pair.
{%- set history_days = positive_int_var('history_days') %}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

events as (

    select * from {{ ref('stg_shop__events') }}

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

active_users as (

    select run_users.*
    from {{ ref('int_active_users') }} as run_users
    where run_users.as_of_date in (
        select run_cutoffs.as_of_date from {{ ref('int_cutoffs') }} as run_cutoffs
    )

),

user_item_features as (

    -- this run's partitions (the table keeps other runs' too)
    select run_pairs.*
    from {{ ref('fct_user_item_features') }} as run_pairs
    where run_pairs.as_of_date in (
        select run_cutoffs.as_of_date from {{ ref('int_cutoffs') }} as run_cutoffs
    )

),

recounted as (

    select
        cutoffs.as_of_date,
        events.user_id,
        events.item_id,
        count(*) as event_count,
        max(events.event_ts) as last_event_ts

    from cutoffs
    cross join events
    inner join items
        on events.item_id = items.item_id
    inner join active_users
        on cutoffs.as_of_date = active_users.as_of_date
        and events.user_id = active_users.user_id
    where
        events.event_ts < {{ date_to_timestamp('cutoffs.as_of_date') }}
        and events.event_ts
        >= {{ date_to_timestamp(add_days('cutoffs.as_of_date', -history_days)) }}
    group by cutoffs.as_of_date, events.user_id, events.item_id

),

final as (

    select
        recounted.event_count as expected_event_count,
        user_item_features.ui_event_count_history as actual_event_count,
        recounted.last_event_ts as expected_last_event_ts,
        coalesce(recounted.as_of_date, user_item_features.as_of_date) as as_of_date,
        coalesce(recounted.user_id, user_item_features.user_id) as user_id,
        coalesce(recounted.item_id, user_item_features.item_id) as item_id

    from recounted
    full outer join user_item_features
        on recounted.as_of_date = user_item_features.as_of_date
        and recounted.user_id = user_item_features.user_id
        and recounted.item_id = user_item_features.item_id
    where
        recounted.as_of_date is null
        or user_item_features.as_of_date is null
        or recounted.event_count <> user_item_features.ui_event_count_history

)

select * from final
