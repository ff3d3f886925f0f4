{#-
    The cutoffs of a run. Features and candidates of cutoff c only see events before c;
    labels of c come from [c, label_end_date). The valid labels end at as_of and the train
    labels end where the valid features start, so nothing of the serve window leaks into training.
    `train_cutoffs` > 1 stacks more training cutoffs one label window earlier each (train_2,
    train_3, ..): a small shop trains on several windows of labelled baskets.
    Ephemeral: computed from the run's vars inside every model that reads it, so runs of
    different dates (concurrent on BigQuery) never share a cutoff table.
-#}
{{ config(materialized='ephemeral') }}
{%- set label_days = positive_int_var('label_days') -%}
{%- set train_cutoffs = positive_int_var('train_cutoffs') -%}

with

run_date as (

    select {{ as_of_date() }} as as_of_date

),

cutoffs as (

    select
        as_of_date,
        'serve' as role,
        cast(null as date) as label_end_date
    from run_date

    union all

    select
        {{ add_days('as_of_date', -label_days) }} as as_of_date,
        'valid' as role,
        as_of_date as label_end_date
    from run_date

    {%- for step in range(1, 1 + train_cutoffs) %}

    union all

    select
        {{ add_days('as_of_date', -(step + 1) * label_days) }} as as_of_date,
        '{{ 'train' if step == 1 else 'train_' ~ step }}' as role,
        {{ add_days('as_of_date', -step * label_days) }} as label_end_date
    from run_date
    {%- endfor %}

),

final as (

    select
        cast(as_of_date as date) as as_of_date,
        cast(role as {{ dbt.type_string() }}) as role,
        cast(label_end_date as date) as label_end_date
    from cutoffs

)

select * from final
