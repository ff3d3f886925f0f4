{#-
    Recently viewed and carted items: what the user looked at or put in the cart in the
    `recent_days` days before the cutoff, scored by event weight x exp(-age_days / 2) so the
    last session dominates. At a cutoff whose history holds no view or cart at all (e.g. a
    purchases-only log) every event type counts instead, so the source is never empty there.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set recent_days = 14 -%}
{%- set decay_days = 2.0 -%}

with

active_users as (

    select * from {{ ref('int_active_users') }}
    where {{ is_this_run_cutoff() }}

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

events as (

    select * from {{ ref('int_events_before_cutoffs') }}
    where is_within_14_days

),

cutoff_event_mix as (

    select
        as_of_date,
        max(case when event_type in ('view', 'add_to_cart') then 1 else 0 end)
            as has_views_or_carts

    from events
    group by as_of_date

),

recent_events as (

    select events.*

    from events
    inner join cutoff_event_mix
        on events.as_of_date = cutoff_event_mix.as_of_date
    where
        events.event_type in ('view', 'add_to_cart')
        or cutoff_event_mix.has_views_or_carts = 0

),

scored_pairs as (

    select
        as_of_date,
        user_id,
        item_id,
        -- rounded so that float summation order cannot reorder ties between reruns
        round(sum(event_weight * exp(-age_days / {{ decay_days }})), 9) as score

    from recent_events
    where age_days <= {{ recent_days }}
    group by as_of_date, user_id, item_id

),

eligible_pairs as (

    select scored_pairs.*

    from scored_pairs
    inner join active_users
        on scored_pairs.as_of_date = active_users.as_of_date
        and scored_pairs.user_id = active_users.user_id
    inner join items
        on scored_pairs.item_id = items.item_id
    where items.is_available

),

final as (

    {{ top_candidates_per_user('eligible_pairs') }}

)

select * from final
{{ read_order() }}
