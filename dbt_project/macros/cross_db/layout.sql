{% macro bigquery_layout(partition_date=none, cluster_by=none) -%}
    {#-
        Model config for BigQuery's partitioning and clustering; a no-op (`tags: []`: dbt refuses
        an empty config() call) on other adapters, so
        `{{ config(**bigquery_layout('as_of_date', ['user_id'])) }}` changes nothing on DuckDB.
        Partitions by a DATE column (one per cutoff: readers filter on as_of_date, so BigQuery
        prunes the other cutoffs); clusters by the columns readers join on.
    -#}
    {%- if target.type != 'bigquery' -%}
        {{ return({'tags': []}) }}
    {%- endif -%}
    {%- set layout = {} -%}
    {%- if partition_date -%}
        {%- do layout.update({'partition_by': {'field': partition_date, 'data_type': 'date'}}) -%}
    {%- endif -%}
    {%- if cluster_by -%}
        {%- do layout.update({'cluster_by': cluster_by}) -%}
    {%- endif -%}
    {{ return(layout) }}
{%- endmacro %}


{% macro read_order(key='user_id') -%}
    {#-
        DuckDB's stand-in for clustering: `select * from final {{ read_order() }}` stores a
        per-cutoff table's rows sorted by (as_of_date, key), so the Python stages' reads of one
        range of users at a time skip the row groups outside it (DuckDB's min/max zone maps);
        unsorted, every chunk scanned the whole cutoff (at 10M events, twice the time). Nothing
        on BigQuery, where `cluster_by` does this.
    -#}
    {%- if target.type == 'duckdb' -%}
        order by as_of_date, {{ key }}
    {%- endif -%}
{%- endmacro %}
