{#-
    Users with at least one event in the `active_days` days before each cutoff: the users who get
    candidates and features. Read from staging (not int_events_before_cutoffs) so that the
    activity window is not clipped when active_days > history_days.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set active_days = positive_int_var('active_days') -%}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

events as (

    select * from {{ ref('stg_shop__events') }}

),

active_users as (

    select distinct
        cutoffs.as_of_date,
        events.user_id

    from cutoffs
    inner join events
        on events.event_ts < {{ date_to_timestamp('cutoffs.as_of_date') }}
        and events.event_ts >= {{ date_to_timestamp(add_days('cutoffs.as_of_date', -active_days)) }}

),

final as (

    select * from active_users

)

select * from final
