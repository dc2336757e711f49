-- One row per workload with what the list endpoints sort and filter on, rewritten by each assessment so
-- that listing 10,000 workloads is a single indexed read instead of a join over every result table.
create table workload_summary (
    workload_id        bigint primary key references workload (id),
    computed_at        timestamptz not null,
    containers         integer not null,
    replicas           double precision,
    cpu_usage          double precision,
    cpu_request        double precision,
    cpu_limit          double precision,
    memory_usage       double precision,
    memory_request     double precision,
    memory_limit       double precision,
    -- Earliest expected exhaustion over containers and resources, and what it concerns.
    earliest_eta       timestamptz,
    earliest_kind      text,
    earliest_resource  text,
    earliest_probability double precision,
    -- 'already_over' sorts first.
    already_over       boolean not null default false,
    saving_money       double precision not null default 0,
    cpu_saving_cores   double precision not null default 0,
    memory_saving_bytes double precision not null default 0
);
create index workload_summary_urgency on workload_summary (already_over desc, earliest_eta nulls last);
create index workload_summary_saving on workload_summary (saving_money desc);
