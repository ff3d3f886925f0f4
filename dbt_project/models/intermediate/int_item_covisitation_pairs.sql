{#-
    Item-to-item co-visitation per cutoff: for each item, its top neighbours among the items seen
    in the same session in the 30 days before the cutoff. A missing session_id falls back to
    "same user, same calendar day" (an approximation of "within one day").

    Cost: each session is capped at its last `max_events_per_session` events before the
    self-join, so a session yields at most 30 x 29 pairs and the join stays linear in events.
    Neighbours are restricted to available catalog items (they are what gets recommended); the
    item a user saw may be any item.
-#}
{{ config(**incremental_by_cutoff(['item_id'])) }}
{%- set max_events_per_session = 30 -%}
{%- set neighbours_per_item = 20 -%}

with

events as (

    select * from {{ ref('int_events_before_cutoffs') }}
    where is_within_30_days

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

available_items as (

    select item_id
    from items
    where is_available

),

sessionised_events as (

    select
        as_of_date,
        user_id,
        coalesce(
            session_id,
            {{ dbt.concat(["'day:'", "cast(event_date as " ~ dbt.type_string() ~ ")"]) }}
        ) as session_key,
        item_id,
        event_id,
        event_ts,
        event_weight

    from events

),

events_numbered_from_last as (

    select
        *,
        row_number() over (
            partition by as_of_date, user_id, session_key
            order by event_ts desc, event_id desc
        ) as position_from_last

    from sessionised_events

),

session_items as (

    -- one row per item of a (capped) session, weighted by the strongest event on it
    select
        as_of_date,
        user_id,
        session_key,
        item_id,
        max(event_weight) as item_weight

    from events_numbered_from_last
    where position_from_last <= {{ max_events_per_session }}
    group by as_of_date, user_id, session_key, item_id

),

pairs as (

    select
        seen.as_of_date,
        seen.item_id,
        neighbour.item_id as neighbour_item_id,
        sum(neighbour.item_weight) as weight

    from session_items as seen
    inner join session_items as neighbour
        on seen.as_of_date = neighbour.as_of_date
        and seen.user_id = neighbour.user_id
        and seen.session_key = neighbour.session_key
        and seen.item_id <> neighbour.item_id
    inner join available_items
        on neighbour.item_id = available_items.item_id
    group by seen.as_of_date, seen.item_id, neighbour.item_id

),

final as (

    {{ top_neighbours_per_item('pairs', neighbours_per_item) }}

)

select * from final
