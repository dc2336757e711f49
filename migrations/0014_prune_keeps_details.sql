-- Retention deletes only results that a newer one of the same series or container supersedes
-- (`Store::prune_results`); no workload detail shows those, so such a delete must not empty every
-- replica's detail cache. The deleting statement says so by setting `headroom.superseded_only` for its
-- own transaction; every other delete still notifies as before.
create or replace function headroom_detail_changed_all() returns trigger language plpgsql as $$
begin
    if TG_OP = 'DELETE' and (not exists (select 1 from changed)
                             or current_setting('headroom.superseded_only', true) = 'on') then
        return null;
    end if;
    perform pg_notify('headroom_detail', '*');
    return null;
end $$;
