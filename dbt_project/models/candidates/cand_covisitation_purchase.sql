{#-
    Items that other users went on to buy after touching the user's recent items
    (int_cand_item_purchase_pairs: view/cart -> purchase and purchase -> purchase). For each
    active user, take the last 20 distinct items before the cutoff (position 1 = most recent)
    and sum, over them, neighbour share / position, where neighbour share is the pair's weight
    normalised over the item's top neighbours. Items the user already bought are kept.
    The query is macros/candidates.sql: covisitation_candidates().
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}

{{ covisitation_candidates(ref('int_cand_item_purchase_pairs'), recent_items_per_user=20) }}
