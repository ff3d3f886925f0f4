{#-
    Per-cutoff tables are incremental and keep every run's partitions: a run for D replaces
    exactly the partitions of its own cutoffs (as_of_date in D, D - label_days,
    D - 2 x label_days, .. D - (1 + train_cutoffs) x label_days) and leaves every other date's as it was, so a rerun or a backfill of D
    rewrites D's partitions and nothing else. The partition list is static (computed from the
    `as_of` var, never from the data), so a cutoff that now yields no rows is emptied too.
      - DuckDB: the strategy `replace_partitions` below: delete the listed cutoffs, insert the
        new rows, in dbt-duckdb's one transaction per model.
      - BigQuery: `insert_overwrite` with static `partitions` (one MERGE that drops the listed
        partitions and inserts; dynamic insert_overwrite would scan the new rows first).
    `dbt build --full-refresh` rebuilds each table with this run's cutoffs only.
-#}

{% macro run_cutoff_dates() -%}
    {#- This run's cutoffs as 'YYYY-MM-DD' strings (serve, valid, train, train_2, ..);
        [] without `as_of`. -#}
    {%- set text = validated_as_of() -%}
    {%- if text is none -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set label_days = positive_int_var('label_days') -%}
    {%- set serve = modules.datetime.date.fromisoformat(text) -%}
    {%- set dates = [] -%}
    {%- for steps_back in range(0, 2 + positive_int_var('train_cutoffs')) -%}
        {%- do dates.append(
            (serve - modules.datetime.timedelta(days=steps_back * label_days)).isoformat()
        ) -%}
    {%- endfor -%}
    {{ return(dates) }}
{%- endmacro %}


{% macro run_cutoff_literals() -%}
    {#- This run's cutoffs as SQL DATE literals, for partition lists and filters. -#}
    {%- set literals = [] -%}
    {%- for day in run_cutoff_dates() -%}
        {%- do literals.append("cast('" ~ day ~ "' as date)") -%}
    {%- endfor -%}
    {{ return(literals) }}
{%- endmacro %}


{% macro is_this_run_cutoff(column='as_of_date') -%}
    {#-
        SQL condition: `column` is one of this run's cutoffs. Every read of a per-cutoff table
        (they hold other runs' dates too) filters with it, which also prunes partitions.
    -#}
    {%- set literals = run_cutoff_literals() -%}
    {%- if literals | length == 0 -%}
        {#- parsing without `as_of`: never executed -#}
        {%- set literals = ['cast(null as date)'] -%}
    {%- endif -%}
    {{ column }} in ({{ literals | join(', ') }})
{%- endmacro %}


{% macro incremental_by_cutoff(cluster_by=none) -%}
    {#-
        Model config of a per-cutoff table (partitioned by as_of_date on BigQuery, clustered by
        `cluster_by`): `{{ config(**incremental_by_cutoff(['user_id'])) }}`. The model's SQL
        must only produce rows of this run's cutoffs: it reads per-cutoff tables through
        is_this_run_cutoff() (the DuckDB strategy fails the model otherwise). New or dropped
        columns are synced, so a changed model does not need a full refresh; older partitions
        get NULL in a new column until their date is rerun.
    -#}
    {%- set settings = {
        'materialized': 'incremental',
        'incremental_strategy': adapter.dispatch('cutoff_incremental_strategy', 'recpipe')(),
        'partitions': run_cutoff_literals(),
        'on_schema_change': 'sync_all_columns',
    } -%}
    {%- do settings.update(bigquery_layout('as_of_date', cluster_by)) -%}
    {{ return(settings) }}
{%- endmacro %}

{% macro default__cutoff_incremental_strategy() -%}
    {{ return('replace_partitions') }}
{%- endmacro %}

{% macro bigquery__cutoff_incremental_strategy() -%}
    {{ return('insert_overwrite') }}
{%- endmacro %}


{% macro get_incremental_replace_partitions_sql(arg_dict) -%}
    {#-
        The `replace_partitions` strategy: delete the rows of the model's static `partitions`
        (by as_of_date), then insert the new rows. dbt-duckdb runs both in one transaction.
    -#}
    {%- set partitions = config.get('partitions') or [] -%}
    {%- if partitions | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "recpipe: the replace_partitions strategy needs the model's `partitions` "
            ~ "(run with --vars '{as_of: YYYY-MM-DD}')."
        ) }}
    {%- endif -%}
    {%- set outside = run_query(
        'select count(*) from ' ~ arg_dict['temp_relation']
        ~ ' where as_of_date is null or as_of_date not in (' ~ (partitions | join(', ')) ~ ')'
    ).columns[0].values()[0] -%}
    {%- if outside > 0 -%}
        {#- a model that writes outside its run's cutoffs would add rows no rerun replaces -#}
        {{ exceptions.raise_compiler_error(
            "recpipe: " ~ this ~ " produced " ~ outside ~ " rows outside this run's cutoffs "
            ~ (partitions | join(', ')) ~ "; filter its inputs with is_this_run_cutoff()."
        ) }}
    {%- endif -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ arg_dict['target_relation'] }}
    where as_of_date in ({{ partitions | join(', ') }});

    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }}
    from {{ arg_dict['temp_relation'] }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {#-
        dbt's `where` test config, plus the placeholder `__this_run_cutoffs__` (the literals of
        run_cutoff_literals): the tests of per-cutoff tables check this run's partitions only
        (dbt_project.yml), which also lets BigQuery prune the other dates.
    -#}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- if '__this_run_cutoffs__' in where -%}
            {%- set where = where | replace('__this_run_cutoffs__', run_cutoff_literals() | join(', ')) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
