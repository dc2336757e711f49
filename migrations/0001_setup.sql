-- Headroom's schema. Written for 100,000 containers: identities are small integer keys, raw history is one
-- row per series and 6-hour chunk (a compressed array of samples, see docs/storage.md), and every
-- time-indexed table that grows without bound is partitioned by time so retention drops whole partitions.

-- A configured Prometheus-compatible source: one cluster.
create table cluster (
    id          integer generated always as identity primary key,
    name        text not null unique,
    created_at  timestamptz not null default now()
);

-- The owning controller of a set of pods: Deployment, StatefulSet, DaemonSet, Job, CronJob, or a bare Pod.
-- Rows are never deleted when the workload disappears from the cluster: its history stays useful.
create table workload (
    id          bigint generated always as identity primary key,
    cluster_id  integer not null references cluster (id),
    namespace   text not null,
    kind        text not null,
    name        text not null,
    -- Labels used for routing and report scopes (team, app, ...).
    labels      jsonb not null default '{}',
    first_seen  timestamptz not null default now(),
    last_seen   timestamptz not null default now(),
    unique (cluster_id, namespace, kind, name)
);
create index workload_namespace on workload (cluster_id, namespace);

-- A container of a workload, aggregated over the workload's pods.
create table container (
    id           bigint generated always as identity primary key,
    workload_id  bigint not null references workload (id),
    name         text not null,
    unique (workload_id, name)
);

-- One stored time series of a container: a metric such as `cpu_usage` (per replica), `memory_usage_max`,
-- `cpu_request`, `replicas`, `oom_kills`.
create table series (
    id            bigint generated always as identity primary key,
    container_id  bigint not null references container (id),
    metric        text not null,
    unit          text not null default '',
    unique (container_id, metric)
);

-- Raw samples: one row per series and 6-hour chunk, aligned to the epoch. `data` holds the chunk's
-- timestamps (run-length coded steps) and values (32-bit floats), see src/store/codec.rs. Partitioned by
-- day of `chunk_start`; partitions are created on demand by the writer and dropped whole by retention.
create table sample_chunk (
    series_id    bigint not null,
    chunk_start  timestamptz not null,
    n_samples    integer not null,
    last_ts      timestamptz not null,
    data         bytea not null,
    primary key (series_id, chunk_start)
) partition by range (chunk_start);

-- Hourly rollups (mean, max, p95, sample count) for long-range forecasts and reports: one row per series
-- and 7-day chunk, same encoding with four value columns. Partitioned by month.
create table rollup_chunk (
    series_id    bigint not null,
    chunk_start  timestamptz not null,
    n_points     integer not null,
    last_ts      timestamptz not null,
    data         bytea not null,
    primary key (series_id, chunk_start)
) partition by range (chunk_start);

-- Where each source's incremental scrape stopped, per query: everything at or before `high_water` is stored.
create table scrape_mark (
    cluster_id  integer not null references cluster (id),
    query_name  text not null,
    high_water  timestamptz not null,
    updated_at  timestamptz not null default now(),
    primary key (cluster_id, query_name)
);

-- One forecast of one series, kept (not overwritten) so a dashboard can show how forecasts changed.
create table forecast (
    id              bigint generated always as identity primary key,
    series_id       bigint not null references series (id),
    computed_at     timestamptz not null default now(),
    model           text not null,
    -- The chosen model's rolling-origin backtest error (MASE).
    backtest_mase   double precision,
    level           double precision not null,
    start_ts        timestamptz not null,
    step_secs       integer not null,
    p50             real[] not null,
    lower           real[] not null,
    upper           real[] not null
);
create index forecast_series_time on forecast (series_id, computed_at desc);

-- When a usage series is expected to reach a threshold (request, limit, capacity).
create table exhaustion (
    id              bigint generated always as identity primary key,
    series_id       bigint not null references series (id),
    computed_at     timestamptz not null default now(),
    model           text not null,
    threshold_kind  text not null,
    threshold       double precision not null,
    -- 'already_over', 'within_horizon' or 'not_within_horizon'.
    status          text not null,
    eta             timestamptz,
    eta_early       timestamptz,
    eta_late        timestamptz,
    probability     double precision not null,
    horizon_secs    bigint not null
);
create index exhaustion_series_time on exhaustion (series_id, computed_at desc);
create index exhaustion_upcoming on exhaustion (eta) where eta is not null;

-- A rightsizing recommendation for one container and resource.
create table recommendation (
    id               bigint generated always as identity primary key,
    container_id     bigint not null references container (id),
    resource         text not null,
    computed_at      timestamptz not null default now(),
    policy           text not null,
    request          double precision,
    limit_value      double precision,
    request_lower    double precision,
    request_upper    double precision,
    current_request  double precision,
    current_limit    double precision,
    rule             text not null,
    reason           text not null,
    risk             text not null,
    -- Positive when the recommendation frees resources: cores or bytes, and money per month.
    saving_amount    double precision not null default 0,
    saving_money     double precision not null default 0
);
create index recommendation_container_time on recommendation (container_id, resource, computed_at desc);

-- The current state of each alert, by fingerprint (rule and workload and resource).
create table alert_state (
    fingerprint    text primary key,
    rule           text not null,
    severity       text not null,
    workload_id    bigint references workload (id),
    -- 'firing' or 'resolved'.
    status         text not null,
    summary        text not null,
    -- Hash of what the message says; a repeat is sent only when it changes or the repeat interval passed.
    content_hash   text not null,
    started_at     timestamptz not null default now(),
    last_sent_at   timestamptz,
    resolved_at    timestamptz,
    updated_at     timestamptz not null default now()
);

-- Messages waiting to be delivered, written in the same transaction as the alert state change, so a
-- restart loses none and sends none twice.
create table alert_outbox (
    id               bigint generated always as identity primary key,
    fingerprint      text not null,
    route            text not null,
    payload_format   text not null,
    payload          jsonb not null,
    created_at       timestamptz not null default now(),
    next_attempt_at  timestamptz not null default now(),
    attempts         integer not null default 0,
    last_error       text,
    delivered_at     timestamptz
);
create index alert_outbox_pending on alert_outbox (next_attempt_at) where delivered_at is null;

-- Silences set through the API: matching alerts are not sent until `ends_at`.
create table silence (
    id          bigint generated always as identity primary key,
    cluster     text,
    namespace   text,
    workload    text,
    ends_at     timestamptz not null,
    created_by  text not null default '',
    comment     text not null default '',
    created_at  timestamptz not null default now()
);

-- Generated capacity planning reports, kept for download.
create table report (
    id            bigint generated always as identity primary key,
    scope         text not null,
    period_start  timestamptz not null,
    period_end    timestamptz not null,
    format        text not null,
    content       bytea not null,
    generated_at  timestamptz not null default now()
);
create index report_time on report (generated_at desc);

-- Creates the missing partitions of `parent` (sample_chunk: one a day; rollup_chunk: one a month) that
-- cover [from_ts, to_ts]. Serialised by an advisory lock so replicas racing on the same day do not fail.
create function ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz) returns integer
language plpgsql as $$
declare
    unit      text := case parent when 'sample_chunk' then 'day' when 'rollup_chunk' then 'month' end;
    step      interval;
    fmt       text;
    lo        timestamp;
    part      text;
    created   integer := 0;
begin
    if unit is null then
        raise exception 'ensure_partitions: % is not a partitioned table of Headroom', parent;
    end if;
    step := case unit when 'day' then interval '1 day' else interval '1 month' end;
    fmt := case unit when 'day' then 'YYYYMMDD' else 'YYYYMM' end;
    perform pg_advisory_xact_lock(hashtext('headroom.partitions.' || parent));
    lo := date_trunc(unit, from_ts at time zone 'UTC');
    while lo <= to_ts at time zone 'UTC' loop
        part := parent || '_' || to_char(lo, fmt);
        if to_regclass(part) is null then
            execute format('create table %I partition of %I for values from (%L) to (%L)',
                           part, parent, lo at time zone 'UTC', (lo + step) at time zone 'UTC');
            created := created + 1;
        end if;
        lo := lo + step;
    end loop;
    return created;
end
$$;
