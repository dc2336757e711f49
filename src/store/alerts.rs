//! Alert SQL: the facts the rules read (latest exhaustion and recommendation rows, OOM kills, throttling,
//! usage), alert state and outbox written in one transaction, claims with a lease, per-webhook pacing, and
//! silences.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{Postgres, Transaction};

use super::{Result, Store};
use crate::alert::plan::{Outgoing, Plan, Silence, StoredState};
use crate::alert::rules::{
    ContainerFacts, Exhaustion, Recommendation, ResourceFacts, Severity, ThresholdKind,
    WorkloadFacts, WorkloadRef,
};
use crate::domain::Resource;

/// Windows of history the alert facts read.
#[derive(Debug, Clone, Copy)]
pub struct FactWindows {
    /// Assessment rows older than this (Unix seconds) are stale and ignored.
    pub since: i64,
    pub now: i64,
    pub oom_window_secs: i64,
    pub throttling_for_secs: i64,
}

/// A message claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: i64,
    /// Proof of the claim: completing needs it, so a sender whose lease ran out cannot complete.
    pub claim_token: i64,
    pub route: String,
    pub payload: serde_json::Value,
    /// Including this one.
    pub attempts: i32,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Delivered,
    /// Try again at `at`; `pause_route_until` holds every message of the route (a 429's Retry-After).
    Retry {
        at: i64,
        error: String,
        pause_route_until: Option<i64>,
    },
    /// Set aside for good after the last attempt.
    Failed {
        error: String,
    },
}

/// What a person sees of an outbox message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxStatus {
    pub delivered_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub next_attempt_at: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// A silence to create.
#[derive(Debug, Clone)]
pub struct NewSilence {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub workload: Option<String>,
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
}

/// One evaluation's transaction: holds the alert lock, so two replicas never decide on the same state.
pub struct AlertRound {
    tx: Transaction<'static, Postgres>,
}

fn labels_map(v: serde_json::Value) -> BTreeMap<String, String> {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

impl Store {
    /// What the alert rules read, per workload: the latest exhaustion and recommendation rows computed
    /// since `w.since`, OOM kills over the window, throttling over the window, and usage where it matters.
    pub async fn alert_facts(&self, w: &FactWindows) -> Result<Vec<WorkloadFacts>> {
        let since = w.since as f64;
        let exhaustion = sqlx::query!(
            r#"select distinct on (e.series_id, e.threshold_kind)
                   c.workload_id, c.id as container_id, c.name as container, s.metric,
                   e.threshold_kind, e.threshold, e.status,
                   extract(epoch from e.eta)::bigint as eta,
                   extract(epoch from e.eta_early)::bigint as eta_early,
                   extract(epoch from e.eta_late)::bigint as eta_late,
                   e.probability
               from exhaustion e
               join series s on s.id = e.series_id
               join container c on c.id = s.container_id
               where e.computed_at >= to_timestamp($1) and e.threshold_kind in ('request', 'limit')
               order by e.series_id, e.threshold_kind, e.computed_at desc"#,
            since
        )
        .fetch_all(&self.pool)
        .await?;
        let recs = sqlx::query!(
            r#"select distinct on (r.container_id, r.resource)
                   c.workload_id, c.id as container_id, c.name as container, r.resource,
                   r.request, r.limit_value, r.current_request, r.current_limit, r.reason, r.risk,
                   r.saving_money
               from recommendation r
               join container c on c.id = r.container_id
               where r.computed_at >= to_timestamp($1)
               order by r.container_id, r.resource, r.computed_at desc"#,
            since
        )
        .fetch_all(&self.pool)
        .await?;
        let incidents = sqlx::query!(
            r#"select s.id, s.metric, c.workload_id, c.id as container_id, c.name as container
               from series s
               join container c on c.id = s.container_id
               join workload w on w.id = c.workload_id
               where s.metric in ('oom_kills', 'cpu_throttled_ratio') and w.last_seen >= to_timestamp($1)"#,
            since
        )
        .fetch_all(&self.pool)
        .await?;

        // (workload, container id) -> container facts being built
        let mut containers: BTreeMap<(i64, i64), ContainerFacts> = BTreeMap::new();
        fn entry<'m>(
            map: &'m mut BTreeMap<(i64, i64), ContainerFacts>,
            wid: i64,
            cid: i64,
            name: &str,
        ) -> &'m mut ContainerFacts {
            map.entry((wid, cid)).or_insert_with(|| ContainerFacts {
                name: name.to_string(),
                resources: Vec::new(),
                oom_kills: 0.0,
                throttled: Vec::new(),
            })
        }
        fn resource_of(c: &mut ContainerFacts, r: Resource) -> &mut ResourceFacts {
            if let Some(i) = c.resources.iter().position(|x| x.resource == r) {
                return &mut c.resources[i];
            }
            c.resources.push(ResourceFacts {
                resource: r,
                usage: None,
                request: None,
                limit: None,
                exhaustion: Vec::new(),
                recommendation: None,
            });
            c.resources.last_mut().expect("just pushed")
        }

        let mut urgent: HashSet<i64> = HashSet::new();
        for row in exhaustion {
            let Some(resource) = row.metric.split('_').next().and_then(|r| r.parse().ok()) else {
                continue;
            };
            let kind = match row.threshold_kind.as_str() {
                "limit" => ThresholdKind::Limit,
                _ => ThresholdKind::Request,
            };
            if row.status != "not_within_horizon" {
                urgent.insert(row.container_id);
            }
            let c = entry(
                &mut containers,
                row.workload_id,
                row.container_id,
                &row.container,
            );
            let r = resource_of(c, resource);
            match kind {
                ThresholdKind::Limit => r.limit = r.limit.or(Some(row.threshold)),
                ThresholdKind::Request => r.request = r.request.or(Some(row.threshold)),
            }
            r.exhaustion.push(Exhaustion {
                threshold_kind: kind,
                threshold: row.threshold,
                already_over: row.status == "already_over",
                eta: row.eta,
                eta_early: row.eta_early,
                eta_late: row.eta_late,
                probability: row.probability,
            });
        }
        for row in recs {
            let Ok(resource) = row.resource.parse::<Resource>() else {
                continue;
            };
            let c = entry(
                &mut containers,
                row.workload_id,
                row.container_id,
                &row.container,
            );
            let r = resource_of(c, resource);
            r.request = r.request.or(row.current_request);
            r.limit = r.limit.or(row.current_limit);
            r.recommendation = Some(Recommendation {
                request: row.request,
                limit: row.limit_value,
                reason: row.reason,
                risk: row.risk,
                saving_money: row.saving_money,
            });
        }

        let ids: Vec<i64> = incidents.iter().map(|r| r.id).collect();
        let oom_from = w.now - w.oom_window_secs;
        let thr_from = w.now - w.throttling_for_secs - 1_800;
        let samples = self
            .read_samples_many(&ids, oom_from.min(thr_from), w.now + 1)
            .await?;
        for row in &incidents {
            let Some(points) = samples.get(&row.id) else {
                continue;
            };
            if row.metric == "oom_kills" {
                let kills: f64 = points
                    .iter()
                    .filter(|(t, _)| *t >= oom_from)
                    .map(|(_, v)| v)
                    .sum();
                if kills > 0.0 {
                    urgent.insert(row.container_id);
                    let c = entry(
                        &mut containers,
                        row.workload_id,
                        row.container_id,
                        &row.container,
                    );
                    c.oom_kills = kills;
                    resource_of(c, Resource::Memory);
                }
            } else {
                let recent: Vec<(i64, f64)> = points
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= thr_from)
                    .collect();
                if !recent.is_empty() {
                    urgent.insert(row.container_id);
                    let c = entry(
                        &mut containers,
                        row.workload_id,
                        row.container_id,
                        &row.container,
                    );
                    c.throttled = recent;
                    resource_of(c, Resource::Cpu);
                }
            }
        }

        // Current usage, requests and limits only where an alert may say them.
        let urgent: Vec<i64> = urgent.into_iter().collect();
        let current = sqlx::query!(
            r#"select s.id, s.container_id, s.metric from series s
               where s.container_id = any($1)
                 and s.metric in ('cpu_usage_max', 'memory_usage_max', 'cpu_request', 'cpu_limit',
                                  'memory_request', 'memory_limit')"#,
            &urgent
        )
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<i64> = current.iter().map(|r| r.id).collect();
        let latest = self
            .read_samples_many(&ids, w.now - 6 * 3_600, w.now + 1)
            .await?;
        let by_container: HashMap<i64, (i64, String)> = containers
            .iter()
            .map(|((wid, cid), c)| (*cid, (*wid, c.name.clone())))
            .collect();
        for row in current {
            let Some(value) = latest.get(&row.id).and_then(|p| p.last()).map(|p| p.1) else {
                continue;
            };
            let Some((wid, name)) = by_container.get(&row.container_id) else {
                continue;
            };
            let Some((res, what)) = row.metric.split_once('_') else {
                continue;
            };
            let Ok(resource) = res.parse::<Resource>() else {
                continue;
            };
            let c = entry(&mut containers, *wid, row.container_id, name);
            let r = resource_of(c, resource);
            match what {
                "usage_max" => r.usage = Some(value),
                "request" => r.request = Some(value),
                "limit" => r.limit = Some(value),
                _ => {}
            }
        }

        let wids: Vec<i64> = containers
            .keys()
            .map(|k| k.0)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let workloads = sqlx::query!(
            r#"select w.id, cl.name as cluster, w.namespace, w.kind, w.name, w.labels
               from workload w join cluster cl on cl.id = w.cluster_id
               where w.id = any($1)"#,
            &wids
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<i64, WorkloadFacts> = workloads
            .into_iter()
            .map(|w| {
                (
                    w.id,
                    WorkloadFacts {
                        workload: WorkloadRef {
                            id: w.id,
                            cluster: w.cluster,
                            namespace: w.namespace,
                            kind: w.kind,
                            name: w.name,
                            labels: labels_map(w.labels),
                        },
                        containers: Vec::new(),
                    },
                )
            })
            .collect();
        for ((wid, _), c) in containers {
            if let Some(w) = out.get_mut(&wid) {
                w.containers.push(c);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Starts an evaluation: a transaction holding the alert lock (replicas take turns).
    pub async fn begin_alert_round(&self) -> Result<AlertRound> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("select pg_advisory_xact_lock(hashtext('headroom.alerts.evaluate'))")
            .execute(&mut *tx)
            .await?;
        Ok(AlertRound { tx })
    }

    /// Queues one message outside an evaluation (`headroom alert test`); returns its id.
    pub async fn enqueue_alert(&self, m: &Outgoing, now: i64) -> Result<i64> {
        let id = sqlx::query_scalar!(
            r#"insert into alert_outbox (fingerprint, route, payload_format, payload, created_at, next_attempt_at)
               values ($1, $2, $3, $4, to_timestamp($5), to_timestamp($5)) returning id"#,
            m.fingerprint,
            m.route,
            m.format.as_str(),
            m.payload,
            now as f64
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Claims the oldest due message of `route` if the route's pace allows a send at `now`; taking the
    /// route's slot and the claim commit together, so neither happens without the other.
    pub async fn claim_alert(
        &self,
        route: &str,
        now: i64,
        lease_secs: i64,
        min_interval_secs: i64,
    ) -> Result<Option<ClaimedMessage>> {
        let mut tx = self.pool.begin().await?;
        let slot = sqlx::query_scalar!(
            r#"insert into alert_route_pace (route, next_send_at) values ($1, to_timestamp($2))
               on conflict (route) do update set next_send_at = excluded.next_send_at
               where alert_route_pace.next_send_at <= to_timestamp($3)
               returning route"#,
            route,
            (now + min_interval_secs) as f64,
            now as f64
        )
        .fetch_optional(&mut *tx)
        .await?;
        if slot.is_none() {
            return Ok(None);
        }
        let row = sqlx::query!(
            r#"update alert_outbox
               set claimed_until = to_timestamp($2), claim_token = nextval('alert_claim_token'),
                   attempts = attempts + 1
               where id = (select id from alert_outbox
                           where route = $1 and delivered_at is null and failed_at is null
                             and next_attempt_at <= to_timestamp($3)
                             and (claimed_until is null or claimed_until <= to_timestamp($3))
                           order by id limit 1
                           for update skip locked)
               returning id, claim_token as "claim_token!", payload, attempts"#,
            route,
            (now + lease_secs) as f64,
            now as f64
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(ClaimedMessage {
            id: row.id,
            claim_token: row.claim_token,
            route: route.to_string(),
            payload: row.payload,
            attempts: row.attempts,
        }))
    }

    /// Records how a claimed send ended. Returns false when the claim is no longer this sender's (its
    /// lease ran out and another sender took the message), in which case nothing is written.
    pub async fn complete_alert(
        &self,
        m: &ClaimedMessage,
        outcome: &Completion,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = match outcome {
            Completion::Delivered => sqlx::query!(
                r#"update alert_outbox set delivered_at = to_timestamp($3), claimed_until = null, last_error = null
                   where id = $1 and claim_token = $2 and delivered_at is null"#,
                m.id,
                m.claim_token,
                now as f64
            )
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Completion::Retry {
                at,
                error,
                pause_route_until,
            } => {
                if let Some(until) = pause_route_until {
                    sqlx::query!(
                        r#"update alert_route_pace set next_send_at = greatest(next_send_at, to_timestamp($2))
                           where route = $1"#,
                        m.route,
                        *until as f64
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query!(
                    r#"update alert_outbox set next_attempt_at = to_timestamp($3), claimed_until = null, last_error = $4
                       where id = $1 and claim_token = $2 and delivered_at is null"#,
                    m.id,
                    m.claim_token,
                    *at as f64,
                    error
                )
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
            Completion::Failed { error } => sqlx::query!(
                r#"update alert_outbox set failed_at = to_timestamp($3), claimed_until = null, last_error = $4
                   where id = $1 and claim_token = $2 and delivered_at is null"#,
                m.id,
                m.claim_token,
                now as f64,
                error
            )
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if done == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn outbox_status(&self, id: i64) -> Result<Option<OutboxStatus>> {
        let row = sqlx::query!(
            r#"select extract(epoch from delivered_at)::bigint as delivered_at,
                      extract(epoch from failed_at)::bigint as failed_at,
                      extract(epoch from next_attempt_at)::bigint as "next_attempt_at!",
                      attempts, last_error
               from alert_outbox where id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| OutboxStatus {
            delivered_at: r.delivered_at,
            failed_at: r.failed_at,
            next_attempt_at: r.next_attempt_at,
            attempts: r.attempts,
            last_error: r.last_error,
        }))
    }

    /// Messages neither delivered nor set aside, per route; for `/metrics` and checks.
    pub async fn pending_alerts(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query!(
            r#"select route, count(*) as "n!" from alert_outbox
               where delivered_at is null and failed_at is null group by route"#
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.route, r.n)).collect())
    }

    /// Creates a silence; at least a namespace or a workload must be named (checked by the caller).
    pub async fn create_silence(&self, s: &NewSilence) -> Result<i64> {
        let id = sqlx::query_scalar!(
            r#"insert into silence (cluster, namespace, workload, ends_at, created_by, comment)
               values ($1, $2, $3, to_timestamp($4), $5, $6) returning id"#,
            s.cluster,
            s.namespace,
            s.workload,
            s.ends_at as f64,
            s.created_by,
            s.comment
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Silences still in force at `now`.
    pub async fn active_silences(&self, now: i64) -> Result<Vec<Silence>> {
        silences(&self.pool, now).await
    }

    /// Ends a silence at `now`; false when there is no such silence in force.
    pub async fn expire_silence(&self, id: i64, now: i64) -> Result<bool> {
        let n = sqlx::query!(
            "update silence set ends_at = to_timestamp($2) where id = $1 and ends_at > to_timestamp($2)",
            id,
            now as f64
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

impl AlertRound {
    /// The alerts firing now plus every digest's state (a digest remembers when it was last sent).
    pub async fn open_states(&mut self) -> Result<Vec<StoredState>> {
        let rows = sqlx::query!(
            r#"select fingerprint, rule, severity, workload_id, status, summary, content_hash,
                      extract(epoch from started_at)::bigint as "started_at!",
                      extract(epoch from last_sent_at)::bigint as last_sent_at,
                      route, labels
               from alert_state where status = 'firing' or rule = 'SavingsDigest'"#
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredState {
                fingerprint: r.fingerprint,
                rule: r.rule,
                severity: Severity::parse(&r.severity),
                workload_id: r.workload_id,
                firing: r.status == "firing",
                summary: r.summary,
                content_hash: r.content_hash,
                started_at: r.started_at,
                last_sent_at: r.last_sent_at,
                route: r.route,
                labels: labels_map(r.labels),
            })
            .collect())
    }

    pub async fn active_silences(&mut self, now: i64) -> Result<Vec<Silence>> {
        silences(&mut *self.tx, now).await
    }

    /// Writes the state changes and queues the messages, then commits: both or neither.
    pub async fn apply(mut self, plan: &Plan, now: i64) -> Result<()> {
        for (w, resolved_at) in plan.writes.iter().map(|w| (&w.state, w.resolved_at)) {
            let labels = serde_json::to_value(&w.labels).unwrap_or_default();
            sqlx::query!(
                r#"insert into alert_state (fingerprint, rule, severity, workload_id, status, summary,
                       content_hash, started_at, last_sent_at, resolved_at, updated_at, route, labels)
                   values ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), to_timestamp($9),
                           to_timestamp($10), to_timestamp($11), $12, $13)
                   on conflict (fingerprint) do update set
                       rule = excluded.rule, severity = excluded.severity, workload_id = excluded.workload_id,
                       status = excluded.status, summary = excluded.summary, content_hash = excluded.content_hash,
                       started_at = excluded.started_at, last_sent_at = excluded.last_sent_at,
                       resolved_at = excluded.resolved_at, updated_at = excluded.updated_at,
                       route = excluded.route, labels = excluded.labels"#,
                w.fingerprint,
                w.rule,
                w.severity.as_str(),
                w.workload_id,
                if w.firing { "firing" } else { "resolved" },
                w.summary,
                w.content_hash,
                w.started_at as f64,
                w.last_sent_at.map(|t| t as f64),
                resolved_at.map(|t| t as f64),
                now as f64,
                w.route,
                labels
            )
            .execute(&mut *self.tx)
            .await?;
        }
        for m in &plan.messages {
            sqlx::query!(
                r#"insert into alert_outbox (fingerprint, route, payload_format, payload, created_at, next_attempt_at)
                   values ($1, $2, $3, $4, to_timestamp($5), to_timestamp($5))"#,
                m.fingerprint,
                m.route,
                m.format.as_str(),
                m.payload,
                now as f64
            )
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

async fn silences<'e>(db: impl sqlx::PgExecutor<'e>, now: i64) -> Result<Vec<Silence>> {
    let rows = sqlx::query!(
        r#"select id, cluster, namespace, workload, extract(epoch from ends_at)::bigint as "ends_at!"
           from silence where ends_at > to_timestamp($1) order by id"#,
        now as f64
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Silence {
            id: r.id,
            cluster: r.cluster,
            namespace: r.namespace,
            workload: r.workload,
            ends_at: r.ends_at,
        })
        .collect())
}
