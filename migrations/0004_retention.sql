-- Retention and rollups (src/store/retention.rs): how far hourly rollups of all series are known to be
-- complete, and the one statement that removes old history, dropping a whole partition.

-- Hours before `rolled_until` are rolled up for every series: long-range reads take rollups there and raw
-- samples only after it. A single row; it only moves forward, and only up to the scrapers' high-water
-- marks, so no sample can arrive for an hour after that hour was rolled up.
create table rollup_mark (
    id            boolean primary key default true check (id),
    rolled_until  timestamptz not null,
    updated_at    timestamptz not null default now()
);

-- Drops one partition of sample_chunk or rollup_chunk. Retention never deletes rows: dropping a partition
-- frees its space at once and leaves nothing to vacuum. Takes the advisory lock of ensure_partitions, so a
-- writer is never creating the partition being dropped, and bounds the wait for the parent's lock so a
-- long query delays retention instead of queueing every writer behind it. Returns false when the
-- partition is already gone (another replica dropped it).
create function drop_partition(parent text, part text) returns boolean
language plpgsql as $$
begin
    if parent not in ('sample_chunk', 'rollup_chunk') then
        raise exception 'drop_partition: % is not a partitioned table of Headroom', parent;
    end if;
    perform set_config('lock_timeout', '10s', true);
    perform pg_advisory_xact_lock(hashtext('headroom.partitions.' || parent));
    if not exists (select 1
                   from pg_inherits i
                   join pg_class c on c.oid = i.inhrelid
                   where i.inhparent = parent::regclass and c.relname = part) then
        return false;
    end if;
    execute format('drop table %I', part);
    return true;
end
$$;
