-- Alert delivery: what the outbox needs for claims with a lease and for giving up, what alert state needs to
-- send a resolved message after the workload is gone, and a per-webhook pacing row shared by all replicas.

-- The route an alert was sent to and the labels it was sent with, so its resolved message reaches the same
-- channel and reads the same even when the workload no longer reports.
alter table alert_state
    add column route   text,
    add column labels  jsonb not null default '{}';
create index alert_state_firing on alert_state (status) where status = 'firing';

-- A sender claims a message by setting `claimed_until` (the lease) and a fresh `claim_token`; it completes
-- the message only if the token is still its own, so a sender whose lease ran out cannot overwrite the
-- outcome of the sender that took over. `failed_at` sets a message aside after the last attempt.
create sequence alert_claim_token;
alter table alert_outbox
    add column claimed_until  timestamptz,
    add column claim_token    bigint,
    add column failed_at      timestamptz;
create index alert_outbox_route_pending on alert_outbox (route, id)
    where delivered_at is null and failed_at is null;

-- At most one message per second per webhook, and a 429's Retry-After, hold for every replica: a sender
-- takes the route's slot (moves `next_send_at` forward) in the same transaction as its claim.
create table alert_route_pace (
    route         text primary key,
    next_send_at  timestamptz not null
);
