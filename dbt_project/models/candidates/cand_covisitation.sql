{#-
    Items often seen in the same session as the user's recent items. For each active user, take
    the last 20 distinct items before the cutoff (position 1 = most recent) and sum, over them,
    neighbour share / position, where neighbour share is the co-visitation weight normalised over
    the item's top neighbours (int_item_covisitation_pairs). Items the user already saw are kept.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set candidate_depth = positive_int_var('candidate_depth') -%}
{%- set recent_items_per_user = 20 -%}

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

),

covisitation_pairs as (

    select * from {{ ref('int_item_covisitation_pairs') }}
    where {{ is_this_run_cutoff() }}

),

user_items as (

    select
        events.as_of_date,
        events.user_id,
        events.item_id,
        max(events.event_ts) as last_event_ts

    from events
    inner join active_users
        on events.as_of_date = active_users.as_of_date
        and events.user_id = active_users.user_id
    group by events.as_of_date, events.user_id, events.item_id

),

user_items_by_recency as (

    select
        *,
        row_number() over (
            partition by as_of_date, user_id
            order by last_event_ts desc, item_id asc
        ) as recency_position

    from user_items

),

neighbour_shares as (

    select
        as_of_date,
        item_id,
        neighbour_item_id,
        weight / sum(weight) over (partition by as_of_date, item_id) as neighbour_share

    from covisitation_pairs

),

scored_pairs as (

    select
        recent.as_of_date,
        recent.user_id,
        neighbour_shares.neighbour_item_id as item_id,
        -- rounded so that float summation order cannot reorder ties between reruns
        round(sum(neighbour_shares.neighbour_share / recent.recency_position), 9) as score

    from user_items_by_recency as recent
    inner join neighbour_shares
        on recent.as_of_date = neighbour_shares.as_of_date
        and recent.item_id = neighbour_shares.item_id
    where recent.recency_position <= {{ recent_items_per_user }}
    group by recent.as_of_date, recent.user_id, neighbour_shares.neighbour_item_id

),

eligible_pairs as (

    select scored_pairs.*

    from scored_pairs
    inner join items
        on scored_pairs.item_id = items.item_id
    where items.is_available

),

ranked_pairs as (

    select
        *,
        row_number() over (
            partition by as_of_date, user_id
            order by score desc, item_id asc
        ) as rank

    from eligible_pairs

),

final as (

    select
        as_of_date,
        user_id,
        item_id,
        cast(score as {{ type_double() }}) as score,
        cast(rank as {{ dbt.type_int() }}) as rank

    from ranked_pairs
    where rank <= {{ candidate_depth }}

)

select * from final
