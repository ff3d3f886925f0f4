{#-
    The users who get candidates and features at each cutoff. At the serve cutoff: every user with
    at least one event in the `active_days` days before it. At a labelled cutoff (train, valid)
    only the users the ranker can learn from or be measured on, since candidates of anyone else
    are never read: of the active users, those in the cutoff's sample of at most
    `max_labelled_users` users, drawn first by the MD5 of their id among the users with a label
    (train cutoffs: any event in the label window; the valid cutoff: its truth, i.e. purchases,
    or any event if nobody bought). recpipe.ranker.sample_of_users draws the same users for
    training and validation, so restricting here changes no trained model or metric; it spares
    the candidate sources the users nobody reads (at 10M events most of them).
    Read from staging (not int_events_before_cutoffs) so that the activity window is not clipped
    when active_days > history_days.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set active_days = positive_int_var('active_days') -%}
{%- set max_labelled_users = positive_int_var('max_labelled_users', maximum=1000000000) -%}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

events as (

    select * from {{ ref('stg_shop__events') }}

),

labels as (

    select * from {{ ref('int_labels') }}
    where {{ is_this_run_cutoff() }}

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

labelled_users as (

    select
        as_of_date,
        user_id,
        max(case when purchased then 1 else 0 end) as has_purchase

    from labels
    group by as_of_date, user_id

),

labelled_users_with_window as (

    select
        labelled_users.*,
        cutoffs.role,
        max(labelled_users.has_purchase) over (partition by labelled_users.as_of_date)
            as window_has_purchase

    from labelled_users
    inner join cutoffs
        on labelled_users.as_of_date = cutoffs.as_of_date

),

eligible_users as (

    -- recpipe.ranker.labelled_users (train) and recpipe.validation.truth_sql (valid)
    select
        as_of_date,
        user_id
    from labelled_users_with_window
    where role <> 'valid' or has_purchase = 1 or window_has_purchase = 0

),

sampled_users as (

    select
        as_of_date,
        user_id
    from (
        select
            *,
            row_number() over (
                partition by as_of_date
                order by {{ dbt.hash('user_id') }}, user_id
            ) as draw

        from eligible_users
    ) as drawn
    where draw <= {{ max_labelled_users }}

),

final as (

    select
        active_users.as_of_date,
        active_users.user_id

    from active_users
    inner join cutoffs
        on active_users.as_of_date = cutoffs.as_of_date
    left join sampled_users
        on active_users.as_of_date = sampled_users.as_of_date
        and active_users.user_id = sampled_users.user_id
    where cutoffs.label_end_date is null or sampled_users.user_id is not null

)

select * from final
