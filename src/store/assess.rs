//! Assessment results: what to assess, and the forecasts, exhaustion estimates, recommendations and
//! workload summaries each run writes. Results are appended, never overwritten, so their history is kept.

use std::collections::BTreeMap;

use super::{Result, Store};
use crate::domain::Resource;
use crate::forecast::Forecast;
use crate::recommend::Recommendation;

/// A container to assess and the ids of its series by metric name.
#[derive(Debug, Clone)]
pub struct AssessTarget {
    pub container_id: i64,
    pub workload_id: i64,
    pub namespace: String,
    pub workload: String,
    pub series: BTreeMap<String, i64>,
}

/// A forecast as stored: thinned to a bounded number of points (upper = max and lower = min of each
/// thinned block, so the band never narrows).
#[derive(Debug, Clone)]
pub struct ForecastRow {
    pub series_id: i64,
    pub model: String,
    pub backtest_mase: Option<f64>,
    pub level: f64,
    pub start: i64,
    pub step: i64,
    pub p50: Vec<f32>,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
}

impl ForecastRow {
    pub fn from_forecast(series_id: i64, f: &Forecast, max_points: usize) -> Self {
        let k = f.p50.len().div_ceil(max_points.max(1)).max(1);
        let blocks = |v: &[f64], pick: fn(&[f64]) -> f64| -> Vec<f32> {
            v.chunks(k).map(|c| pick(c) as f32).collect()
        };
        Self {
            series_id,
            model: f.model.clone(),
            backtest_mase: f.backtest_mase,
            level: f.level,
            start: f.start,
            step: f.step * k as i64,
            p50: blocks(&f.p50, |c| c[c.len() / 2]),
            lower: blocks(&f.lower, |c| {
                c.iter().copied().fold(f64::INFINITY, f64::min)
            }),
            upper: blocks(&f.upper, |c| {
                c.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExhaustionRow {
    pub series_id: i64,
    pub resource: Resource,
    pub model: String,
    /// "request" or "limit".
    pub threshold_kind: &'static str,
    pub threshold: f64,
    pub status: &'static str,
    pub eta: Option<i64>,
    pub eta_early: Option<i64>,
    pub eta_late: Option<i64>,
    pub probability: f64,
    pub horizon_secs: i64,
}

#[derive(Debug, Clone)]
pub struct RecommendationRow {
    pub container_id: i64,
    pub resource: Resource,
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
    /// Cores or bytes freed over all replicas (negative: more is needed).
    pub saving_amount: f64,
    /// Money per month over all replicas.
    pub saving_money: f64,
    /// Per-replica usage at the last sample.
    pub usage: Option<f64>,
    pub replicas: f64,
}

impl RecommendationRow {
    pub fn from_recommendation(
        container_id: i64,
        r: &Recommendation,
        policy: &str,
        current_request: Option<f64>,
        current_limit: Option<f64>,
        replicas: f64,
    ) -> Self {
        let (amount, money) = r
            .saving
            .as_ref()
            .map(|s| {
                (
                    s.units * replicas,
                    s.money_per_month.unwrap_or(0.0) * replicas,
                )
            })
            .unwrap_or((0.0, 0.0));
        Self {
            container_id,
            resource: r.resource,
            policy: policy.to_string(),
            request: r.request,
            limit: r.limit,
            request_lower: r.request_lower,
            request_upper: r.request_upper,
            current_request,
            current_limit,
            rule: r.rule.clone(),
            reason: r.reason.clone(),
            risk: r.risk.clone(),
            saving_amount: amount,
            saving_money: money,
            usage: None,
            replicas,
        }
    }
}

/// A resource's figures at the last sample.
#[derive(Debug, Clone, Copy)]
pub struct ResourceNow {
    pub resource: Resource,
    /// Per-replica usage.
    pub usage: Option<f64>,
    pub request: Option<f64>,
    pub limit: Option<f64>,
}

/// Everything one container's assessment produced.
#[derive(Debug, Clone, Default)]
pub struct ContainerResult {
    pub container_id: i64,
    pub workload_id: i64,
    pub usage: Vec<ResourceNow>,
    pub forecasts: Vec<ForecastRow>,
    pub exhaustions: Vec<ExhaustionRow>,
    pub recommendations: Vec<RecommendationRow>,
    pub not_enough_history: u64,
    /// Replicas at the last sample (1 when unknown).
    pub replicas: f64,
}

impl Store {
    /// Up to `limit` containers with id above `after`, with their series.
    pub async fn assess_targets(&self, after: i64, limit: i64) -> Result<Vec<AssessTarget>> {
        let rows = sqlx::query!(
            // The page of containers first (primary key order, stopping at the limit), then their series:
            // grouping the whole join before the limit would read every series for every page.
            r#"with c as (
                   select c.id, c.workload_id from container c
                   where c.id > $1 and exists (select 1 from series s where s.container_id = c.id)
                   order by c.id
                   limit $2)
               select c.id as "id!", c.workload_id as "workload_id!", w.namespace, w.name as workload,
                      array_agg(s.metric) as "metrics!", array_agg(s.id) as "ids!"
               from c join series s on s.container_id = c.id join workload w on w.id = c.workload_id
               group by c.id, c.workload_id, w.namespace, w.name
               order by c.id"#,
            after,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AssessTarget {
                container_id: r.id,
                workload_id: r.workload_id,
                namespace: r.namespace,
                workload: r.workload,
                series: r.metrics.into_iter().zip(r.ids).collect(),
            })
            .collect())
    }

    /// Appends one batch of results, all stamped `computed_at`, in one transaction.
    pub async fn save_assessment(
        &self,
        results: &[ContainerResult],
        computed_at: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_results(&mut tx, results, computed_at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn insert_results(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        results: &[ContainerResult],
        computed_at: i64,
    ) -> Result<()> {
        let at = computed_at as f64;
        // One statement for the whole batch: the bands travel as three flat arrays, cut back into each
        // forecast's rows by offset and length.
        let fs: Vec<&ForecastRow> = results.iter().flat_map(|r| &r.forecasts).collect();
        if !fs.is_empty() {
            let mut offsets = Vec::with_capacity(fs.len());
            let mut lens = Vec::with_capacity(fs.len());
            let total: usize = fs.iter().map(|f| f.p50.len()).sum();
            let (mut p50, mut lower, mut upper) = (
                Vec::with_capacity(total),
                Vec::with_capacity(total),
                Vec::with_capacity(total),
            );
            for f in &fs {
                let n = f.p50.len().min(f.lower.len()).min(f.upper.len());
                offsets.push(p50.len() as i32);
                lens.push(n as i32);
                p50.extend_from_slice(&f.p50[..n]);
                lower.extend_from_slice(&f.lower[..n]);
                upper.extend_from_slice(&f.upper[..n]);
            }
            sqlx::query!(
                r#"insert into forecast (series_id, computed_at, model, backtest_mase, level, start_ts, step_secs, p50, lower, upper)
                   select s, to_timestamp($1), m, b, l, to_timestamp(st), sp,
                          ($9::real[])[o + 1 : o + n], ($10::real[])[o + 1 : o + n], ($11::real[])[o + 1 : o + n]
                   from unnest($2::bigint[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::int[], $8::int[], $12::int[])
                        as t(s, m, b, l, st, sp, o, n)
                   order by o"#,
                at,
                &fs.iter().map(|f| f.series_id).collect::<Vec<_>>(),
                &fs.iter().map(|f| f.model.clone()).collect::<Vec<_>>(),
                &fs.iter().map(|f| f.backtest_mase).collect::<Vec<_>>() as &[Option<f64>],
                &fs.iter().map(|f| f.level).collect::<Vec<_>>(),
                &fs.iter().map(|f| f.start as f64).collect::<Vec<_>>(),
                &fs.iter().map(|f| f.step as i32).collect::<Vec<_>>(),
                &offsets,
                &p50,
                &lower,
                &upper,
                &lens
            )
            .execute(&mut **tx)
            .await?;
        }
        let ex: Vec<&ExhaustionRow> = results.iter().flat_map(|r| &r.exhaustions).collect();
        if !ex.is_empty() {
            let ts = |v: Option<i64>| v.map(|t| t as f64);
            sqlx::query!(
                r#"insert into exhaustion (series_id, computed_at, model, threshold_kind, threshold, status, eta, eta_early, eta_late, probability, horizon_secs)
                   select s, to_timestamp($1), m, k, th, st, to_timestamp(e), to_timestamp(ee), to_timestamp(el), p, h
                   from unnest($2::bigint[], $3::text[], $4::text[], $5::float8[], $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::bigint[])
                        as t(s, m, k, th, st, e, ee, el, p, h)"#,
                at,
                &ex.iter().map(|e| e.series_id).collect::<Vec<_>>(),
                &ex.iter().map(|e| e.model.clone()).collect::<Vec<_>>(),
                &ex.iter().map(|e| e.threshold_kind.to_string()).collect::<Vec<_>>(),
                &ex.iter().map(|e| e.threshold).collect::<Vec<_>>(),
                &ex.iter().map(|e| e.status.to_string()).collect::<Vec<_>>(),
                &ex.iter().map(|e| ts(e.eta)).collect::<Vec<_>>() as &[Option<f64>],
                &ex.iter().map(|e| ts(e.eta_early)).collect::<Vec<_>>() as &[Option<f64>],
                &ex.iter().map(|e| ts(e.eta_late)).collect::<Vec<_>>() as &[Option<f64>],
                &ex.iter().map(|e| e.probability).collect::<Vec<_>>(),
                &ex.iter().map(|e| e.horizon_secs).collect::<Vec<_>>()
            )
            .execute(&mut **tx)
            .await?;
        }
        let rs: Vec<&RecommendationRow> = results.iter().flat_map(|r| &r.recommendations).collect();
        if !rs.is_empty() {
            sqlx::query!(
                r#"insert into recommendation (container_id, resource, computed_at, policy, request, limit_value, request_lower, request_upper,
                                               current_request, current_limit, rule, reason, risk, saving_amount, saving_money, usage, replicas)
                   select c, r, to_timestamp($1), p, rq, lv, rl, ru, cr, cl, ru2, re, ri, sa, sm, u, n
                   from unnest($2::bigint[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::float8[], $8::float8[],
                               $9::float8[], $10::float8[], $11::text[], $12::text[], $13::text[], $14::float8[], $15::float8[],
                               $16::float8[], $17::float8[])
                        as t(c, r, p, rq, lv, rl, ru, cr, cl, ru2, re, ri, sa, sm, u, n)"#,
                at,
                &rs.iter().map(|r| r.container_id).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.resource.as_str().to_string()).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.policy.clone()).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.request).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.limit).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.request_lower).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.request_upper).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.current_request).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.current_limit).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.rule.clone()).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.reason.clone()).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.risk.clone()).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.saving_amount).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.saving_money).collect::<Vec<_>>(),
                &rs.iter().map(|r| r.usage).collect::<Vec<_>>() as &[Option<f64>],
                &rs.iter().map(|r| r.replicas).collect::<Vec<_>>()
            )
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Rewrites the summary of every workload assessed at `computed_at` from that run's results.
    pub async fn refresh_workload_summaries(&self, computed_at: i64) -> Result<u64> {
        let done = sqlx::query!(
            r#"with run as (select to_timestamp($1) as at),
               rec as (
                   select c.workload_id,
                          sum(r.saving_money) as saving_money,
                          sum(r.saving_amount) filter (where r.resource = 'cpu') as cpu_saving,
                          sum(r.saving_amount) filter (where r.resource = 'memory') as mem_saving,
                          sum(r.current_request) filter (where r.resource = 'cpu') as cpu_request,
                          sum(r.current_limit) filter (where r.resource = 'cpu') as cpu_limit,
                          sum(r.current_request) filter (where r.resource = 'memory') as memory_request,
                          sum(r.current_limit) filter (where r.resource = 'memory') as memory_limit,
                          count(distinct c.id) as containers,
                          max(r.replicas) as replicas,
                          sum(r.usage) filter (where r.resource = 'cpu') as cpu_usage,
                          sum(r.usage) filter (where r.resource = 'memory') as memory_usage
                   from recommendation r join container c on c.id = r.container_id, run
                   where r.computed_at = run.at
                   group by c.workload_id
               ),
               ex as (
                   select distinct on (c.workload_id) c.workload_id, e.eta, e.threshold_kind,
                          case when s.metric like 'cpu%' then 'cpu' else 'memory' end as resource,
                          e.probability, e.status = 'already_over' as over
                   from exhaustion e join series s on s.id = e.series_id join container c on c.id = s.container_id, run
                   where e.computed_at = run.at and e.status in ('already_over', 'within_horizon')
                   order by c.workload_id, (e.status = 'already_over') desc, e.eta nulls last
               )
               insert into workload_summary as ws (workload_id, computed_at, containers, cpu_request, cpu_limit, memory_request,
                                             memory_limit, earliest_eta, earliest_kind, earliest_resource, earliest_probability,
                                             already_over, saving_money, cpu_saving_cores, memory_saving_bytes, replicas, cpu_usage, memory_usage)
               select rec.workload_id, (select at from run), rec.containers, rec.cpu_request, rec.cpu_limit, rec.memory_request,
                      rec.memory_limit, ex.eta, ex.threshold_kind, ex.resource, ex.probability, coalesce(ex.over, false),
                      coalesce(rec.saving_money, 0), coalesce(rec.cpu_saving, 0), coalesce(rec.mem_saving, 0),
                      rec.replicas, rec.cpu_usage, rec.memory_usage
               from rec left join ex using (workload_id)
               on conflict (workload_id) do update set
                   computed_at = excluded.computed_at, containers = excluded.containers, cpu_request = excluded.cpu_request,
                   cpu_limit = excluded.cpu_limit, memory_request = excluded.memory_request, memory_limit = excluded.memory_limit,
                   earliest_eta = excluded.earliest_eta, earliest_kind = excluded.earliest_kind,
                   earliest_resource = excluded.earliest_resource, earliest_probability = excluded.earliest_probability,
                   already_over = excluded.already_over, saving_money = excluded.saving_money,
                   cpu_saving_cores = excluded.cpu_saving_cores, memory_saving_bytes = excluded.memory_saving_bytes,
                   replicas = excluded.replicas, cpu_usage = excluded.cpu_usage, memory_usage = excluded.memory_usage"#,
            computed_at as f64
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
