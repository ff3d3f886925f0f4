{#-
    Items often seen in the same session as the user's recent items. For each active user, take
    the last 20 distinct items before the cutoff (position 1 = most recent) and sum, over them,
    neighbour share / position, where neighbour share is the co-visitation weight normalised over
    the item's top neighbours (int_item_covisitation_pairs). Items the user already saw are kept.
    The query is macros/candidates.sql: covisitation_candidates().
-#}
{{ config(**incremental_by_cutoff(['user_id'])) }}

{{ covisitation_candidates(ref('int_item_covisitation_pairs'), recent_items_per_user=20) }}
