with

source as (

    select * from {{ source('shop', 'items') }}

),

renamed as (

    select
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(category as {{ dbt.type_string() }}) as category,
        -- first level of the '/'-separated hierarchy, for category affinity features
        {{ top_level_category('cast(category as ' ~ dbt.type_string() ~ ')') }}
            as category_top_level,
        cast(brand as {{ dbt.type_string() }}) as brand,
        cast(price as {{ type_double() }}) as price,
        cast(is_available as {{ dbt.type_boolean() }}) as is_available,
        cast(loaded_at as {{ dbt.type_timestamp() }}) as loaded_at

    from source

),

final as (

    select * from renamed

)

select * from final
