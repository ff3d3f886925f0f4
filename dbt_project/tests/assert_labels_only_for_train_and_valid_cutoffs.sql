-- Labels exist only for the train(_n) and valid cutoffs: the serve cutoff's future is unknown.
-- Fails with each label row at one of this run's cutoffs that is not a train or valid cutoff.
-- (int_labels keeps other runs' partitions; this run replaced all of its own, writing
-- nothing for serve: see macros/cross_db/cutoff_partitions.sql.)

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

labels as (

    select * from {{ ref('int_labels') }}

),

final as (

    select
        labels.as_of_date,
        labels.user_id,
        labels.item_id,
        cutoffs.role

    from labels
    inner join cutoffs
        on labels.as_of_date = cutoffs.as_of_date
    where cutoffs.role <> 'valid' and substr(cutoffs.role, 1, 5) <> 'train'

)

select * from final
