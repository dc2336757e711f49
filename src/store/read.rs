//! Reads for the HTTP API and the dashboard: workload lists from the summary table, one workload's
//! containers and series, the latest results and their history.

use super::{Result, Store};

/// Filters and order of a workload list.
#[derive(Debug, Clone, Default)]
pub struct WorkloadQuery {
    /// Just this workload.
    pub id: Option<i64>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    /// `key=value` on the workload's labels.
    pub label: Option<(String, String)>,
    /// Only workloads expected to exhaust something before this Unix time (or already over).
    pub exhausts_before: Option<i64>,
    /// Only workloads whose recommendations save money.
    pub with_saving: bool,
    /// "urgency", "saving" or "name".
    pub sort: String,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadRow {
    pub id: i64,
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub assessed_at: Option<i64>,
    pub containers: Option<i32>,
    pub replicas: Option<f64>,
    pub cpu_usage: Option<f64>,
    pub cpu_request: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub memory_usage: Option<f64>,
    pub memory_request: Option<f64>,
    pub memory_limit: Option<f64>,
    pub already_over: bool,
    pub earliest_eta: Option<i64>,
    pub earliest_kind: Option<String>,
    pub earliest_resource: Option<String>,
    pub earliest_probability: Option<f64>,
    pub saving_money_per_month: f64,
    pub cpu_saving_cores: f64,
    pub memory_saving_bytes: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerSeries {
    pub container_id: i64,
    pub name: String,
    /// Metric name → series id.
    pub series: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ForecastRecord {
    pub series_id: i64,
    pub computed_at: i64,
    pub model: String,
    pub backtest_mase: Option<f64>,
    pub level: f64,
    pub start: i64,
    pub step_secs: i32,
    pub p50: Vec<f32>,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExhaustionRecord {
    pub series_id: i64,
    pub computed_at: i64,
    pub model: String,
    pub threshold_kind: String,
    pub threshold: f64,
    pub status: String,
    pub eta: Option<i64>,
    pub eta_early: Option<i64>,
    pub eta_late: Option<i64>,
    pub probability: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecommendationRecord {
    pub container_id: i64,
    pub workload_id: i64,
    pub container: String,
    pub resource: String,
    pub computed_at: i64,
    pub policy: String,
    pub request: Option<f64>,
    pub limit: Option<f64>,
    pub request_lower: Option<f64>,
    pub request_upper: Option<f64>,
    pub current_request: Option<f64>,
    pub current_limit: Option<f64>,
    pub rule: String,
    pub reason: String,
    pub risk: String,
    pub saving_amount: f64,
    pub saving_money_per_month: f64,
}

impl Store {
    /// A page of workloads with their summaries, and how many match in all.
    pub async fn list_workloads(&self, q: &WorkloadQuery) -> Result<(Vec<WorkloadRow>, i64)> {
        let (label_key, label_value) = match &q.label {
            Some((k, v)) => (Some(k.as_str()), Some(v.as_str())),
            None => (None, None),
        };
        let rows = sqlx::query!(
            r#"select w.id, cl.name as cluster, w.namespace, w.kind, w.name,
                      extract(epoch from w.first_seen)::bigint as "first_seen!",
                      extract(epoch from w.last_seen)::bigint as "last_seen!",
                      extract(epoch from ws.computed_at)::bigint as assessed_at,
                      ws.containers as "containers?", ws.replicas as "replicas?", ws.cpu_usage as "cpu_usage?",
                      ws.cpu_request as "cpu_request?", ws.cpu_limit as "cpu_limit?", ws.memory_usage as "memory_usage?",
                      ws.memory_request as "memory_request?", ws.memory_limit as "memory_limit?",
                      coalesce(ws.already_over, false) as "already_over!",
                      extract(epoch from ws.earliest_eta)::bigint as earliest_eta,
                      ws.earliest_kind as "earliest_kind?", ws.earliest_resource as "earliest_resource?",
                      ws.earliest_probability as "earliest_probability?",
                      coalesce(ws.saving_money, 0) as "saving_money!",
                      coalesce(ws.cpu_saving_cores, 0) as "cpu_saving_cores!",
                      coalesce(ws.memory_saving_bytes, 0) as "memory_saving_bytes!",
                      count(*) over () as "total!"
               from workload w
               join cluster cl on cl.id = w.cluster_id
               left join workload_summary ws on ws.workload_id = w.id
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.kind = $3)
                 and ($4::text is null or w.labels ->> $4 = $5)
                 and ($6::float8 is null or ws.already_over or ws.earliest_eta < to_timestamp($6))
                 and (not $7 or ws.saving_money > 0)
                 and ($11::bigint is null or w.id = $11)
               order by
                 case when $8 = 'urgency' then coalesce(ws.already_over, false) end desc,
                 case when $8 = 'urgency' then ws.earliest_eta end asc nulls last,
                 case when $8 = 'saving' then ws.saving_money end desc nulls last,
                 w.namespace, w.name, w.id
               limit $9 offset $10"#,
            q.cluster,
            q.namespace,
            q.kind,
            label_key,
            label_value,
            q.exhausts_before.map(|t| t as f64),
            q.with_saving,
            q.sort,
            q.limit,
            q.offset,
            q.id
        )
        .fetch_all(&self.pool)
        .await?;
        let total = rows.first().map(|r| r.total).unwrap_or(0);
        Ok((
            rows.into_iter()
                .map(|r| WorkloadRow {
                    id: r.id,
                    cluster: r.cluster,
                    namespace: r.namespace,
                    kind: r.kind,
                    name: r.name,
                    first_seen: r.first_seen,
                    last_seen: r.last_seen,
                    assessed_at: r.assessed_at,
                    containers: r.containers,
                    replicas: r.replicas,
                    cpu_usage: r.cpu_usage,
                    cpu_request: r.cpu_request,
                    cpu_limit: r.cpu_limit,
                    memory_usage: r.memory_usage,
                    memory_request: r.memory_request,
                    memory_limit: r.memory_limit,
                    already_over: r.already_over,
                    earliest_eta: r.earliest_eta,
                    earliest_kind: r.earliest_kind,
                    earliest_resource: r.earliest_resource,
                    earliest_probability: r.earliest_probability,
                    saving_money_per_month: r.saving_money,
                    cpu_saving_cores: r.cpu_saving_cores,
                    memory_saving_bytes: r.memory_saving_bytes,
                })
                .collect(),
            total,
        ))
    }

    /// One workload's summary, `None` when there is no such workload.
    pub async fn workload(&self, id: i64) -> Result<Option<WorkloadRow>> {
        let q = WorkloadQuery {
            id: Some(id),
            sort: "name".into(),
            limit: 1,
            ..Default::default()
        };
        Ok(self.list_workloads(&q).await?.0.into_iter().next())
    }

    pub async fn workload_containers(&self, workload_id: i64) -> Result<Vec<ContainerSeries>> {
        let rows = sqlx::query!(
            r#"select c.id, c.name, coalesce(array_agg(s.metric) filter (where s.id is not null), '{}') as "metrics!",
                      coalesce(array_agg(s.id) filter (where s.id is not null), '{}') as "ids!"
               from container c left join series s on s.container_id = c.id
               where c.workload_id = $1
               group by c.id order by c.name"#,
            workload_id
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ContainerSeries {
                container_id: r.id,
                name: r.name,
                series: r.metrics.into_iter().zip(r.ids).collect(),
            })
            .collect())
    }

    /// Forecasts of a series, newest first.
    pub async fn forecasts(&self, series_id: i64, limit: i64) -> Result<Vec<ForecastRecord>> {
        Ok(sqlx::query_as!(
            ForecastRecord,
            r#"select series_id, extract(epoch from computed_at)::bigint as "computed_at!", model, backtest_mase, level,
                      extract(epoch from start_ts)::bigint as "start!", step_secs, p50, lower, upper
               from forecast where series_id = $1 order by computed_at desc limit $2"#,
            series_id,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest forecast of each of these series, in one round trip.
    pub async fn latest_forecasts(&self, series_ids: &[i64]) -> Result<Vec<ForecastRecord>> {
        Ok(sqlx::query_as!(
            ForecastRecord,
            r#"select distinct on (series_id) series_id, extract(epoch from computed_at)::bigint as "computed_at!",
                      model, backtest_mase, level, extract(epoch from start_ts)::bigint as "start!", step_secs,
                      p50, lower, upper
               from forecast where series_id = any($1)
               order by series_id, computed_at desc"#,
            series_ids
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest exhaustion estimates of these series (one per series and threshold kind).
    pub async fn current_exhaustions(&self, series_ids: &[i64]) -> Result<Vec<ExhaustionRecord>> {
        let rows = sqlx::query!(
            r#"select distinct on (series_id, threshold_kind) series_id,
                      extract(epoch from computed_at)::bigint as "computed_at!", model, threshold_kind, threshold, status,
                      extract(epoch from eta)::bigint as eta, extract(epoch from eta_early)::bigint as eta_early,
                      extract(epoch from eta_late)::bigint as eta_late, probability
               from exhaustion where series_id = any($1)
               order by series_id, threshold_kind, computed_at desc"#,
            series_ids
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExhaustionRecord {
                series_id: r.series_id,
                computed_at: r.computed_at,
                model: r.model,
                threshold_kind: r.threshold_kind,
                threshold: r.threshold,
                status: r.status,
                eta: r.eta,
                eta_early: r.eta_early,
                eta_late: r.eta_late,
                probability: r.probability,
            })
            .collect())
    }

    /// The latest recommendation per container and resource, for one workload or (None) for all, with a
    /// saving of at least `min_saving` per month.
    pub async fn current_recommendations(
        &self,
        workload_id: Option<i64>,
        min_saving: f64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<RecommendationRecord>> {
        let rows = sqlx::query!(
            r#"select * from (
                 select distinct on (r.container_id, r.resource) r.container_id, c.workload_id, c.name as container, r.resource,
                        extract(epoch from r.computed_at)::bigint as "computed_at!", r.policy, r.request, r.limit_value,
                        r.request_lower, r.request_upper, r.current_request, r.current_limit, r.rule, r.reason, r.risk,
                        r.saving_amount, r.saving_money
                 from recommendation r join container c on c.id = r.container_id
                 where ($1::bigint is null or c.workload_id = $1)
                 order by r.container_id, r.resource, r.computed_at desc
               ) latest
               where saving_money >= $2
               order by saving_money desc, container_id, resource
               limit $3 offset $4"#,
            workload_id,
            min_saving,
            limit,
            offset
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RecommendationRecord {
                container_id: r.container_id,
                workload_id: r.workload_id,
                container: r.container,
                resource: r.resource,
                computed_at: r.computed_at,
                policy: r.policy,
                request: r.request,
                limit: r.limit_value,
                request_lower: r.request_lower,
                request_upper: r.request_upper,
                current_request: r.current_request,
                current_limit: r.current_limit,
                rule: r.rule,
                reason: r.reason,
                risk: r.risk,
                saving_amount: r.saving_amount,
                saving_money_per_month: r.saving_money,
            })
            .collect())
    }

    /// Unix time of the newest stored sample (any series), for readiness.
    pub async fn newest_sample_time(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar!(
            r#"select extract(epoch from max(last_ts))::bigint from sample_chunk"#
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
