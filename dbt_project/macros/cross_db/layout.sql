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
