-- Assessment work shared by replicas without a coordinator: each cycle's containers are split into
-- batches; a replica claims a batch with `for update skip locked` and a lease, and stores the batch's
-- results in the same transaction that marks it done, but only while its claim (token) still holds. A
-- replica that dies leaves its lease to expire, and another one takes the batch over.
create table assess_claim (
    cycle        bigint not null,
    batch_start  bigint not null,
    claimed_by   text,
    token        bigint,
    lease_until  timestamptz,
    attempts     integer not null default 0,
    done_at      timestamptz,
    primary key (cycle, batch_start)
);
create index assess_claim_open on assess_claim (cycle) where done_at is null;
create sequence assess_claim_token;

-- The per-replica usage and replica count each recommendation was made at, so workload summaries can be
-- computed in SQL by whichever replica finishes a cycle.
alter table recommendation add column usage double precision, add column replicas double precision;
