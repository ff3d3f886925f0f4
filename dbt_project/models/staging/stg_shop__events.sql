with

source as (

    select * from {{ source('shop', 'events') }}

),

renamed as (

    select
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(item_id as {{ dbt.type_string() }}) as item_id,
        cast(event_type as {{ dbt.type_string() }}) as event_type,
        cast(event_ts as {{ dbt.type_timestamp() }}) as event_ts,
        cast(cast(event_ts as {{ dbt.type_timestamp() }}) as date) as event_date,
        cast(session_id as {{ dbt.type_string() }}) as session_id,
        cast(quantity as {{ dbt.type_int() }}) as quantity,
        cast(price as {{ type_double() }}) as price,
        cast(loaded_at as {{ dbt.type_timestamp() }}) as loaded_at,
        cast(source_file as {{ dbt.type_string() }}) as source_file

    from source

),

final as (

    select * from renamed

)

select * from final
