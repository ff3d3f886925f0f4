-- Labels exist only for the train and valid cutoffs: the serve cutoff's future is unknown.
-- Fails with each label row whose cutoff is not a train or valid cutoff of the run.

with

cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

labels as (

    select * from {{ ref('int_labels') }}

),

final as (

    select labels.*

    from labels
    left join cutoffs
        on labels.as_of_date = cutoffs.as_of_date
    where cutoffs.role is null or cutoffs.role not in ('train', 'valid')

)

select * from final
