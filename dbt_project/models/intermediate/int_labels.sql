{#-
    What each user did in the label window [as_of_date, label_end_date) of the train and valid
    cutoffs, graded: 3 purchased, else 2 carted, else 1 viewed. Catalog items only (the ranker
    only ever scores catalog items). Users are not restricted to the cutoff's active users, so
    recall can count purchases of users the candidates missed.
-#}
{{ config(**incremental_by_cutoff(['user_id', 'item_id'])) }}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}
    where label_end_date is not null

),

events as (

    select * from {{ ref('stg_shop__events') }}

),

items as (

    select * from {{ ref('stg_shop__items') }}

),

events_in_label_window as (

    select
        cutoffs.as_of_date,
        events.user_id,
        events.item_id,
        events.event_type

    from cutoffs
    inner join events
        on events.event_ts >= {{ date_to_timestamp('cutoffs.as_of_date') }}
        and events.event_ts < {{ date_to_timestamp('cutoffs.label_end_date') }}
    inner join items
        on events.item_id = items.item_id

),

graded as (

    select
        as_of_date,
        user_id,
        item_id,
        max({{ event_type_label('event_type') }}) as label

    from events_in_label_window
    group by as_of_date, user_id, item_id

),

final as (

    select
        as_of_date,
        user_id,
        item_id,
        cast(label as {{ dbt.type_int() }}) as label,
        label = 3 as purchased

    from graded

)

select * from final
{{ read_order() }}
