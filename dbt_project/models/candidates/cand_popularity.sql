{#-
    Global popularity: the same top `candidate_depth` available catalog items for every active
    user of a cutoff. Score = weighted event count (view 1, cart 3, purchase 5) over the 7 days
    before the cutoff; its fractional part (whole-history weighted count / (max + 1), < 1)
    breaks ties by longer-term popularity, which is the fallback when the last 7 days are quiet.
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}
{%- set candidate_depth = positive_int_var('candidate_depth') -%}

with

active_users as (

    select * from {{ ref('int_active_users') }}
    where {{ is_this_run_cutoff() }}

),

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

events as (

    select * from {{ ref('int_events_before_cutoffs') }}

),

item_popularity as (

    select
        as_of_date,
        item_id,
        sum(case when is_within_7_days then event_weight else 0 end) as weighted_count_7d,
        sum(event_weight) as weighted_count_history

    from events
    group by as_of_date, item_id

),

available_items_at_cutoffs as (

    select
        cutoffs.as_of_date,
        items.item_id,
        coalesce(item_popularity.weighted_count_7d, 0) as weighted_count_7d,
        coalesce(item_popularity.weighted_count_history, 0) as weighted_count_history

    from cutoffs
    cross join items
    left join item_popularity
        on cutoffs.as_of_date = item_popularity.as_of_date
        and items.item_id = item_popularity.item_id
    where items.is_available

),

scored_items as (

    select
        as_of_date,
        item_id,
        round(
            weighted_count_7d
            + weighted_count_history
            / (max(weighted_count_history) over (partition by as_of_date) + 1.0),
            9
        ) as score

    from available_items_at_cutoffs

),

top_items as (

    select
        *,
        row_number() over (partition by as_of_date order by score desc, item_id asc) as rank

    from scored_items

),

final as (

    select
        active_users.as_of_date,
        active_users.user_id,
        top_items.item_id,
        cast(top_items.score as {{ type_double() }}) as score,
        cast(top_items.rank as {{ dbt.type_int() }}) as rank

    from active_users
    inner join top_items
        on active_users.as_of_date = top_items.as_of_date
    where top_items.rank <= {{ candidate_depth }}

)

select * from final
{{ read_order() }}
