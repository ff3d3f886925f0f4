with

source as (

    select * from {{ source('shop', 'users') }}

),

renamed as (

    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(signup_ts as {{ dbt.type_timestamp() }}) as signup_ts,
        cast(segment as {{ dbt.type_string() }}) as segment,
        cast(loaded_at as {{ dbt.type_timestamp() }}) as loaded_at

    from source

),

final as (

    select * from renamed

)

select * from final
