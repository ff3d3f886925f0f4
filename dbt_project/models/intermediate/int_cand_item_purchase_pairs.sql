{#-
    "Led to a purchase" co-visitation per cutoff (view/cart -> purchase and purchase -> purchase):
    item b is a neighbour of item a when a user interacted with a (any event type) and then
    purchased b, at or after their first event on a, within the 30 days before the cutoff.
    weight = number of distinct users who did so. Top `neighbours_per_item` available items.

    Cost: each user is capped at their last `max_items_per_user` distinct items (seeds) and
    purchases, so the self-join is at most users x 30 x 30 per cutoff.
-#}
{{ config(**incremental_by_cutoff(['item_id'])) }}
{%- set max_items_per_user = 30 -%}
{%- set neighbours_per_item = 20 -%}

with

events as (

    select * from {{ ref('int_events_before_cutoffs') }}
    where is_within_30_days

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

user_items as (

    select
        as_of_date,
        user_id,
        item_id,
        min(event_ts) as first_event_ts,
        max(event_ts) as last_event_ts

    from events
    group by as_of_date, user_id, item_id

),

seed_items as (

    select *
    from (
        select
            *,
            row_number() over (
                partition by as_of_date, user_id
                order by last_event_ts desc, item_id asc
            ) as position_from_last
        from user_items
    ) as numbered
    where position_from_last <= {{ max_items_per_user }}

),

user_purchases as (

    select
        events.as_of_date,
        events.user_id,
        events.item_id,
        max(events.event_ts) as last_purchase_ts

    from events
    inner join items
        on events.item_id = items.item_id
    where events.event_type = 'purchase' and items.is_available
    group by events.as_of_date, events.user_id, events.item_id

),

capped_purchases as (

    select *
    from (
        select
            *,
            row_number() over (
                partition by as_of_date, user_id
                order by last_purchase_ts desc, item_id asc
            ) as position_from_last
        from user_purchases
    ) as numbered
    where position_from_last <= {{ max_items_per_user }}

),

pairs as (

    select
        seed_items.as_of_date,
        seed_items.item_id,
        capped_purchases.item_id as neighbour_item_id,
        count(distinct seed_items.user_id) as weight

    from seed_items
    inner join capped_purchases
        on seed_items.as_of_date = capped_purchases.as_of_date
        and seed_items.user_id = capped_purchases.user_id
        and seed_items.item_id <> capped_purchases.item_id
        and seed_items.first_event_ts <= capped_purchases.last_purchase_ts
    group by seed_items.as_of_date, seed_items.item_id, capped_purchases.item_id

),

final as (

    {{ top_neighbours_per_item('pairs', neighbours_per_item) }}

)

select * from final
