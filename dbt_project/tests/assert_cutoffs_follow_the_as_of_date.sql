-- The run has exactly the cutoffs serve = as_of, valid = as_of - label_days,
-- train = as_of - 2 x label_days and, with train_cutoffs = n > 1, train_2 .. train_n one label
-- window earlier each, each label window ending where the next cutoff starts.
-- Fails with a row describing what is wrong.
{%- set label_days = positive_int_var('label_days') %}
{%- set train_cutoffs = positive_int_var('train_cutoffs') %}

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

expected as (

    select
        'serve' as role,
        {{ as_of_date() }} as as_of_date,
        cast(null as date) as label_end_date
    union all
    select
        'valid' as role,
        {{ add_days(as_of_date(), -label_days) }} as as_of_date,
        {{ as_of_date() }} as label_end_date
    {%- for step in range(1, 1 + train_cutoffs) %}
    union all
    select
        '{{ 'train' if step == 1 else 'train_' ~ step }}' as role,
        {{ add_days(as_of_date(), -(step + 1) * label_days) }} as as_of_date,
        {{ add_days(as_of_date(), -step * label_days) }} as label_end_date
    {%- endfor %}

),

final as (

    select
        expected.as_of_date as expected_as_of_date,
        cutoffs.as_of_date as actual_as_of_date,
        coalesce(expected.role, cutoffs.role) as role

    from expected
    full outer join cutoffs
        on expected.role = cutoffs.role
    where
        expected.role is null
        or cutoffs.role is null
        or expected.as_of_date <> cutoffs.as_of_date
        or coalesce(expected.label_end_date, cast('1900-01-01' as date))
        <> coalesce(cutoffs.label_end_date, cast('1900-01-01' as date))

)

select * from final
