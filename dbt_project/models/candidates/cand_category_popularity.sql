{#-
    Popular in the user's favourite categories, with trend. A user's category affinity is the
    share of their decayed event weight (exp(-age_days / 30)) on each catalog category; their
    top `categories_per_user` categories are kept. An item's popularity inside its category is
    its weighted event count over the last 30 days x (1 + its 7-day trend, clipped to [0, 2]),
    normalised to a share of the category; only each category's top `candidate_depth` items
    (by share, ties by item_id) are scored, as no user can rank more of one category's items.
    score = affinity share x item share.

    Cold start: a user whose history touches no catalog category (or who has little history)
    still gets the global popularity source; this source widens their set as soon as they have
    one event on a categorised item.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set categories_per_user = 3 -%}
{%- set decay_days = 30.0 -%}

with

active_users as (

    select * from {{ ref('int_active_users') }}
    where {{ is_this_run_cutoff() }}

),

items as (

    select * from {{ ref('stg_shop__items') }}
    where category is not null and category <> ''

),

events as (

    select * from {{ ref('int_events_before_cutoffs') }}

),

categorised_events as (

    select
        events.*,
        items.category

    from events
    inner join items
        on events.item_id = items.item_id

),

user_category_weight as (

    select
        categorised_events.as_of_date,
        categorised_events.user_id,
        categorised_events.category,
        sum(categorised_events.event_weight * exp(-categorised_events.age_days / {{ decay_days }}))
            as weight

    from categorised_events
    inner join active_users
        on categorised_events.as_of_date = active_users.as_of_date
        and categorised_events.user_id = active_users.user_id
    group by categorised_events.as_of_date, categorised_events.user_id, categorised_events.category

),

user_top_categories as (

    select
        *,
        weight / sum(weight) over (partition by as_of_date, user_id) as affinity,
        row_number() over (
            partition by as_of_date, user_id
            order by weight desc, category asc
        ) as category_rank

    from user_category_weight

),

item_activity as (

    select
        as_of_date,
        item_id,
        category,
        sum(case when is_within_30_days then event_weight else 0 end) as weight_30d,
        sum(case when is_within_7_days then 1 else 0 end) as events_7d,
        sum(case when is_within_14_days and not is_within_7_days then 1 else 0 end)
            as events_previous_7d

    from categorised_events
    group by as_of_date, item_id, category

),

item_trended as (

    select
        item_activity.as_of_date,
        item_activity.item_id,
        item_activity.category,
        item_activity.weight_30d * (
            1.0 + least(2.0, greatest(
                0.0,
                (item_activity.events_7d + 1.0) / (item_activity.events_previous_7d + 1.0) - 1.0
            ))
        ) as trended_weight

    from item_activity
    inner join items
        on item_activity.item_id = items.item_id
    where items.is_available and item_activity.weight_30d > 0

),

item_category_share as (

    select
        *,
        trended_weight / sum(trended_weight) over (partition by as_of_date, category)
            as category_share,
        row_number() over (
            partition by as_of_date, category
            order by trended_weight desc, item_id asc
        ) as rank_in_category

    from item_trended

),

scored_pairs as (

    select
        user_top_categories.as_of_date,
        user_top_categories.user_id,
        item_category_share.item_id,
        round(user_top_categories.affinity * item_category_share.category_share, 9) as score

    from user_top_categories
    inner join item_category_share
        on user_top_categories.as_of_date = item_category_share.as_of_date
        and user_top_categories.category = item_category_share.category
    where
        user_top_categories.category_rank <= {{ categories_per_user }}
        and item_category_share.rank_in_category <= {{ positive_int_var('candidate_depth') }}

),

final as (

    {{ top_candidates_per_user('scored_pairs') }}

)

select * from final
{{ read_order() }}
