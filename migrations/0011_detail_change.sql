-- Every replica keeps the JSON of recently served workload details in memory. These triggers tell all of
-- them, through NOTIFY on the channel `headroom_detail`, which workloads' details a committed change
-- touched: the payload is a comma-separated list of workload ids, or `*` for "everything". NOTIFY is
-- delivered only when (and if) the transaction commits, in commit order, so a replica drops an entry right
-- after the database holds something newer. Only what the detail shows is watched: a scrape that only
-- advances `workload.last_seen`, or appends samples, notifies nobody.

-- Sends `ids` (deduplicated) in payloads of at most 300 ids, well below NOTIFY's 8,000-byte limit.
create function headroom_notify_detail(ids bigint[]) returns void language plpgsql as $$
declare
    chunk text;
begin
    for chunk in
        select string_agg(id::text, ',' order by id)
        from (select id, (row_number() over (order by id) - 1) / 300 as part
              from (select distinct unnest(ids) as id) d
              where id is not null) numbered
        group by part
    loop
        perform pg_notify('headroom_detail', chunk);
    end loop;
end $$;

-- Rows keyed by series (forecasts, exhaustion estimates), as the transition table `changed`.
create function headroom_detail_changed_by_series() returns trigger language plpgsql as $$
begin
    perform headroom_notify_detail(array(
        select c.workload_id from changed n
        join series s on s.id = n.series_id
        join container c on c.id = s.container_id));
    return null;
end $$;

-- Rows keyed by container (recommendations, series).
create function headroom_detail_changed_by_container() returns trigger language plpgsql as $$
begin
    perform headroom_notify_detail(array(
        select c.workload_id from changed n join container c on c.id = n.container_id));
    return null;
end $$;

-- Rows keyed by workload (summaries, containers).
create function headroom_detail_changed_by_workload() returns trigger language plpgsql as $$
begin
    perform headroom_notify_detail(array(select workload_id from changed));
    return null;
end $$;

-- Deletions (retention) and truncation: rare, possibly of millions of rows, so "everything" (but not for a
-- delete that removed nothing).
create function headroom_detail_changed_all() returns trigger language plpgsql as $$
begin
    if TG_OP = 'DELETE' and not exists (select 1 from changed) then
        return null;
    end if;
    perform pg_notify('headroom_detail', '*');
    return null;
end $$;

create trigger forecast_detail after insert on forecast referencing new table as changed
    for each statement execute function headroom_detail_changed_by_series();
create trigger exhaustion_detail after insert on exhaustion referencing new table as changed
    for each statement execute function headroom_detail_changed_by_series();
create trigger recommendation_detail after insert on recommendation referencing new table as changed
    for each statement execute function headroom_detail_changed_by_container();
create trigger series_detail after insert on series referencing new table as changed
    for each statement execute function headroom_detail_changed_by_container();
create trigger container_detail after insert on container referencing new table as changed
    for each statement execute function headroom_detail_changed_by_workload();
-- The summary is upserted: inserted rows reach the insert trigger, updated rows the update trigger.
create trigger workload_summary_detail_insert after insert on workload_summary referencing new table as changed
    for each statement execute function headroom_detail_changed_by_workload();
create trigger workload_summary_detail_update after update on workload_summary referencing new table as changed
    for each statement execute function headroom_detail_changed_by_workload();

-- A workload's identity as the detail shows it (not `last_seen`, which every scrape advances).
create function headroom_detail_changed_workload() returns trigger language plpgsql as $$
begin
    perform pg_notify('headroom_detail', new.id::text);
    return null;
end $$;
create trigger workload_detail after update on workload for each row
    when ((old.cluster_id, old.namespace, old.kind, old.name, old.first_seen)
          is distinct from (new.cluster_id, new.namespace, new.kind, new.name, new.first_seen))
    execute function headroom_detail_changed_workload();
create trigger cluster_detail after update on cluster for each row
    when (old.name is distinct from new.name)
    execute function headroom_detail_changed_all();

create trigger forecast_detail_delete after delete on forecast referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger forecast_detail_truncate after truncate on forecast
    for each statement execute function headroom_detail_changed_all();
create trigger exhaustion_detail_delete after delete on exhaustion referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger exhaustion_detail_truncate after truncate on exhaustion
    for each statement execute function headroom_detail_changed_all();
create trigger recommendation_detail_delete after delete on recommendation referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger recommendation_detail_truncate after truncate on recommendation
    for each statement execute function headroom_detail_changed_all();
create trigger series_detail_delete after delete on series referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger series_detail_truncate after truncate on series
    for each statement execute function headroom_detail_changed_all();
create trigger container_detail_delete after delete on container referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger container_detail_truncate after truncate on container
    for each statement execute function headroom_detail_changed_all();
create trigger workload_detail_delete after delete on workload referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger workload_detail_truncate after truncate on workload
    for each statement execute function headroom_detail_changed_all();
create trigger workload_summary_detail_delete after delete on workload_summary referencing old table as changed
    for each statement execute function headroom_detail_changed_all();
create trigger workload_summary_detail_truncate after truncate on workload_summary
    for each statement execute function headroom_detail_changed_all();
