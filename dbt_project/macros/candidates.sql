{#- SQL shared by the candidate sources (models/candidates) and the item-pair tables they read. -#}

{% macro top_candidates_per_user(scored_pairs) -%}
    {#-
        The body of a candidate model's `final` CTE: rank `scored_pairs` (as_of_date, user_id,
        item_id, score; one row per user and item) per user and cutoff by score (ties: item_id),
        keep ranks 1..candidate_depth and cast to the candidate contract
        (as_of_date, user_id, item_id, score double, rank int).
    -#}
    {%- set candidate_depth = positive_int_var('candidate_depth') -%}
    select
        as_of_date,
        user_id,
        item_id,
        cast(score as {{ type_double() }}) as score,
        cast(rank as {{ dbt.type_int() }}) as rank

    from (
        select
            *,
            row_number() over (
                partition by as_of_date, user_id
                order by score desc, item_id asc
            ) as rank

        from {{ scored_pairs }}
    ) as ranked_pairs
    where rank <= {{ candidate_depth }}
{%- endmacro %}


{% macro top_neighbours_per_item(pairs, neighbours_per_item) -%}
    {#-
        The body of an item-pair model's `final` CTE: rank `pairs` (as_of_date, item_id,
        neighbour_item_id, weight; one row per item and neighbour) per item and cutoff by weight
        (ties: neighbour_item_id), keep the top `neighbours_per_item` and cast to the item-pair
        contract (as_of_date, item_id, neighbour_item_id, weight double, neighbour_rank int)
        that covisitation_candidates() reads.
    -#}
    select
        as_of_date,
        item_id,
        neighbour_item_id,
        cast(weight as {{ type_double() }}) as weight,
        cast(neighbour_rank as {{ dbt.type_int() }}) as neighbour_rank

    from (
        select
            *,
            row_number() over (
                partition by as_of_date, item_id
                order by weight desc, neighbour_item_id asc
            ) as neighbour_rank

        from {{ pairs }}
    ) as ranked_pairs
    where neighbour_rank <= {{ neighbours_per_item }}
{%- endmacro %}


{% macro covisitation_candidates(pairs_model, recent_items_per_user=20) -%}
    {#-
        The whole query of a "neighbours of the user's recent items" candidate source. For each
        active user, take the last `recent_items_per_user` distinct items before the cutoff
        (position 1 = most recent) and sum, over them, neighbour share / position, where
        neighbour share is the pair's weight normalised over the item's neighbours in
        `pairs_model` (a ref() to a per-cutoff table with the top_neighbours_per_item()
        columns). Items the user already touched are kept.
    -#}
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

item_pairs as (

    select * from {{ pairs_model }}
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

    from item_pairs

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

final as (

    {{ top_candidates_per_user('eligible_pairs') }}

)

select * from final
{{ read_order() }}
{%- endmacro %}
