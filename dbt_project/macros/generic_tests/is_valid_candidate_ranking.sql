{#-
    A candidate list per (as_of_date, user_id) must be ranked 1..n without gaps or ties, n at most
    `max_rank`, in order of score descending then item_id ascending (so reruns agree).
    Fails with each row whose rank differs from that order, or is out of range.
-#}
{% test is_valid_candidate_ranking(model, max_rank, partition_by=['as_of_date', 'user_id']) %}

with expected as (

    select
        *,
        row_number() over (
            partition by {{ partition_by | join(', ') }}
            order by score desc, item_id asc
        ) as expected_rank
    from {{ model }}

),

final as (

    select *
    from expected
    where
        rank is null
        or rank <> expected_rank
        or rank < 1
        or rank > {{ max_rank }}
        or score is null

)

select * from final

{% endtest %}
