//! What capacity reports read (the containers of a scope, the latest assessment's recommendations,
//! exhaustion estimates and forecasts, older forecasts to check against what happened) and the generated
//! reports themselves. "Latest" means the run recorded in `workload_summary`, so reads stay indexed.

use std::collections::BTreeMap;

use super::{Result, Store};

/// Which workloads a report covers. Every field narrows; all `None` is the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeFilter {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// A workload label key and the value it must have (`team` = `payments`).
    pub label: Option<(String, String)>,
}

impl ScopeFilter {
    fn label_key(&self) -> Option<&str> {
        self.label.as_ref().map(|l| l.0.as_str())
    }
    fn label_value(&self) -> Option<&str> {
        self.label.as_ref().map(|l| l.1.as_str())
    }
}

/// A container in the scope with its series and its workload's replica count at the latest assessment.
#[derive(Debug, Clone)]
pub struct ScopeContainer {
    pub container_id: i64,
    pub workload_id: i64,
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub workload: String,
    pub container: String,
    /// Replicas at the latest assessment; `None` when the workload was never assessed.
    pub replicas: Option<f64>,
    pub series: BTreeMap<String, i64>,
}

/// The latest recommendation of one container and resource.
#[derive(Debug, Clone)]
pub struct LatestRecommendation {
    pub container_id: i64,
    pub resource: String,
    pub request: Option<f64>,
    pub limit: Option<f64>,
    pub current_request: Option<f64>,
    pub current_limit: Option<f64>,
    /// Cores or bytes over all replicas.
    pub saving_amount: f64,
    /// Per month over all replicas.
    pub saving_money: f64,
    pub risk: String,
}

/// The latest exhaustion estimate of a usage series that is over or expected to cross its threshold.
#[derive(Debug, Clone)]
pub struct LatestExhaustion {
    pub series_id: i64,
    pub container_id: i64,
    pub metric: String,
    pub threshold_kind: String,
    pub threshold: f64,
    pub status: String,
    pub eta: Option<i64>,
    pub eta_early: Option<i64>,
    pub eta_late: Option<i64>,
    pub probability: f64,
}

/// The latest forecast of a usage series, read only at the requested times (values are `None` past the
/// forecast's end, more than one step after its last point).
#[derive(Debug, Clone)]
pub struct ForecastAt {
    pub series_id: i64,
    pub container_id: i64,
    pub metric: String,
    pub model: String,
    pub backtest_mase: Option<f64>,
    pub level: f64,
    pub p50: Vec<Option<f64>>,
    pub lower: Vec<Option<f64>>,
    pub upper: Vec<Option<f64>>,
}

/// A whole stored forecast, made earlier, to compare with the samples that arrived since.
#[derive(Debug, Clone)]
pub struct PastForecast {
    pub series_id: i64,
    pub metric: String,
    pub computed_at: i64,
    pub level: f64,
    pub start: i64,
    pub step: i64,
    pub p50: Vec<f32>,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
}

/// A stored report without its content.
#[derive(Debug, Clone)]
pub struct StoredReport {
    pub id: i64,
    pub scope: String,
    pub period_start: i64,
    pub period_end: i64,
    pub format: String,
    pub generated_at: i64,
    pub bytes: i64,
}

impl Store {
    /// Every container of the scope that has series, in id order.
    pub async fn scope_containers(&self, scope: &ScopeFilter) -> Result<Vec<ScopeContainer>> {
        let rows = sqlx::query!(
            r#"select c.id, c.workload_id, cl.name as cluster, w.namespace, w.kind, w.name as workload,
                      c.name as container, ws.replicas as "replicas?",
                      array_agg(s.metric order by s.id) as "metrics!", array_agg(s.id order by s.id) as "ids!"
               from container c
               join workload w on w.id = c.workload_id
               join cluster cl on cl.id = w.cluster_id
               join series s on s.container_id = c.id
               left join workload_summary ws on ws.workload_id = w.id
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.labels ->> $3 = $4)
               group by c.id, w.id, cl.name, ws.replicas
               order by c.id"#,
            scope.cluster.as_deref(),
            scope.namespace.as_deref(),
            scope.label_key(),
            scope.label_value()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ScopeContainer {
                container_id: r.id,
                workload_id: r.workload_id,
                cluster: r.cluster,
                namespace: r.namespace,
                kind: r.kind,
                workload: r.workload,
                container: r.container,
                replicas: r.replicas,
                series: r.metrics.into_iter().zip(r.ids).collect(),
            })
            .collect())
    }

    /// The recommendations of each workload's latest assessment in the scope.
    pub async fn latest_recommendations(
        &self,
        scope: &ScopeFilter,
    ) -> Result<Vec<LatestRecommendation>> {
        let rows = sqlx::query!(
            r#"select r.container_id, r.resource, r.request, r.limit_value, r.current_request, r.current_limit,
                      r.saving_amount, r.saving_money, r.risk
               from workload_summary ws
               join workload w on w.id = ws.workload_id
               join cluster cl on cl.id = w.cluster_id
               join container c on c.workload_id = w.id
               join recommendation r on r.container_id = c.id and r.computed_at = ws.computed_at
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.labels ->> $3 = $4)
               order by r.container_id, r.resource"#,
            scope.cluster.as_deref(),
            scope.namespace.as_deref(),
            scope.label_key(),
            scope.label_value()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LatestRecommendation {
                container_id: r.container_id,
                resource: r.resource,
                request: r.request,
                limit: r.limit_value,
                current_request: r.current_request,
                current_limit: r.current_limit,
                saving_amount: r.saving_amount,
                saving_money: r.saving_money,
                risk: r.risk,
            })
            .collect())
    }

    /// The latest assessment's exhaustion estimates in the scope that are over or expected to cross.
    pub async fn latest_exhaustions(&self, scope: &ScopeFilter) -> Result<Vec<LatestExhaustion>> {
        let rows = sqlx::query!(
            r#"select e.series_id, s.container_id, s.metric, e.threshold_kind, e.threshold, e.status,
                      extract(epoch from e.eta)::bigint as eta, extract(epoch from e.eta_early)::bigint as eta_early,
                      extract(epoch from e.eta_late)::bigint as eta_late, e.probability
               from workload_summary ws
               join workload w on w.id = ws.workload_id
               join cluster cl on cl.id = w.cluster_id
               join container c on c.workload_id = w.id
               join series s on s.container_id = c.id
               join exhaustion e on e.series_id = s.id and e.computed_at = ws.computed_at
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.labels ->> $3 = $4)
                 and e.status <> 'not_within_horizon'
               order by e.series_id, e.threshold_kind"#,
            scope.cluster.as_deref(),
            scope.namespace.as_deref(),
            scope.label_key(),
            scope.label_value()
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LatestExhaustion {
                series_id: r.series_id,
                container_id: r.container_id,
                metric: r.metric,
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

    /// The latest assessment's forecasts in the scope, read at `at` (Unix seconds) only: reports need a
    /// few points of each forecast, not its whole array.
    pub async fn latest_forecasts_at(
        &self,
        scope: &ScopeFilter,
        at: &[i64],
    ) -> Result<Vec<ForecastAt>> {
        let at: Vec<f64> = at.iter().map(|&t| t as f64).collect();
        let rows = sqlx::query!(
            r#"select f.series_id, s.container_id, s.metric, f.model, f.backtest_mase, f.level,
                      array(select case when x.i <= cardinality(f.p50) + 1 then f.p50[least(x.i, cardinality(f.p50))] end
                            from (select greatest(1, round((t - extract(epoch from f.start_ts)) / f.step_secs)::int + 1) as i, k
                                  from unnest($5::float8[]) with ordinality as u(t, k)) x order by x.k) as "p50!: Vec<Option<f32>>",
                      array(select case when x.i <= cardinality(f.lower) + 1 then f.lower[least(x.i, cardinality(f.lower))] end
                            from (select greatest(1, round((t - extract(epoch from f.start_ts)) / f.step_secs)::int + 1) as i, k
                                  from unnest($5::float8[]) with ordinality as u(t, k)) x order by x.k) as "lower!: Vec<Option<f32>>",
                      array(select case when x.i <= cardinality(f.upper) + 1 then f.upper[least(x.i, cardinality(f.upper))] end
                            from (select greatest(1, round((t - extract(epoch from f.start_ts)) / f.step_secs)::int + 1) as i, k
                                  from unnest($5::float8[]) with ordinality as u(t, k)) x order by x.k) as "upper!: Vec<Option<f32>>"
               from workload_summary ws
               join workload w on w.id = ws.workload_id
               join cluster cl on cl.id = w.cluster_id
               join container c on c.workload_id = w.id
               join series s on s.container_id = c.id
               join forecast f on f.series_id = s.id and f.computed_at = ws.computed_at
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.labels ->> $3 = $4)
               order by f.series_id"#,
            scope.cluster.as_deref(),
            scope.namespace.as_deref(),
            scope.label_key(),
            scope.label_value(),
            &at
        )
        .fetch_all(&self.pool)
        .await?;
        let widen = |v: Vec<Option<f32>>| v.into_iter().map(|x| x.map(f64::from)).collect();
        Ok(rows
            .into_iter()
            .map(|r| ForecastAt {
                series_id: r.series_id,
                container_id: r.container_id,
                metric: r.metric,
                model: r.model,
                backtest_mase: r.backtest_mase,
                level: r.level,
                p50: widen(r.p50),
                lower: widen(r.lower),
                upper: widen(r.upper),
            })
            .collect())
    }

    /// For at most `limit` usage-peak series of the scope (a stable pseudo-random choice), the oldest
    /// forecast computed within `[from, to]`: the one whose outcome is known for longest.
    pub async fn past_forecasts(
        &self,
        scope: &ScopeFilter,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<PastForecast>> {
        let rows = sqlx::query!(
            r#"select s.id as series_id, s.metric, extract(epoch from f.computed_at)::bigint as "computed_at!",
                      f.level, extract(epoch from f.start_ts)::bigint as "start!", f.step_secs, f.p50, f.lower, f.upper
               from series s
               join container c on c.id = s.container_id
               join workload w on w.id = c.workload_id
               join cluster cl on cl.id = w.cluster_id
               cross join lateral (
                   select * from forecast f
                   where f.series_id = s.id and f.computed_at >= to_timestamp($5) and f.computed_at <= to_timestamp($6)
                   order by f.computed_at
                   limit 1
               ) f
               where ($1::text is null or cl.name = $1)
                 and ($2::text is null or w.namespace = $2)
                 and ($3::text is null or w.labels ->> $3 = $4)
                 and s.metric in ('cpu_usage_max', 'memory_usage_max')
               order by hashtext(s.id::text), s.id
               limit $7"#,
            scope.cluster.as_deref(),
            scope.namespace.as_deref(),
            scope.label_key(),
            scope.label_value(),
            from as f64,
            to as f64,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PastForecast {
                series_id: r.series_id,
                metric: r.metric,
                computed_at: r.computed_at,
                level: r.level,
                start: r.start,
                step: i64::from(r.step_secs),
                p50: r.p50,
                lower: r.lower,
                upper: r.upper,
            })
            .collect())
    }

    /// Keeps one generated report; returns its id.
    pub async fn insert_report(
        &self,
        scope: &str,
        period: (i64, i64),
        format: &str,
        content: &[u8],
        generated_at: i64,
    ) -> Result<i64> {
        let ids = self
            .insert_report_set(
                scope,
                period,
                generated_at,
                &[(format, content.to_vec())],
                false,
            )
            .await?;
        Ok(ids[0])
    }

    /// Keeps every format of one generated report in one transaction, so a failure keeps all or none of
    /// them; `export` marks them for the file export of `reports.directory`. Returns the ids in the order
    /// of `renderings` (format, content).
    pub async fn insert_report_set(
        &self,
        scope: &str,
        period: (i64, i64),
        generated_at: i64,
        renderings: &[(&str, Vec<u8>)],
        export: bool,
    ) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(renderings.len());
        for (format, content) in renderings {
            let id = sqlx::query_scalar!(
                r#"insert into report (scope, period_start, period_end, format, content, generated_at, export_pending)
                   values ($1, to_timestamp($2), to_timestamp($3), $4, $5, to_timestamp($6), $7)
                   returning id"#,
                scope,
                period.0 as f64,
                period.1 as f64,
                format,
                content,
                generated_at as f64,
                export
            )
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Ids of the reports whose files are not written yet, oldest first.
    pub async fn reports_pending_export(&self, limit: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar!(
            "select id from report where export_pending order by id limit $1",
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Clears the pending export of reports whose files are written.
    pub async fn mark_reports_exported(&self, ids: &[i64]) -> Result<()> {
        sqlx::query!(
            "update report set export_pending = false where id = any($1)",
            ids
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One stored report with its content, for download.
    pub async fn report_content(&self, id: i64) -> Result<Option<(StoredReport, Vec<u8>)>> {
        let row = sqlx::query!(
            r#"select id, scope, extract(epoch from period_start)::bigint as "period_start!",
                      extract(epoch from period_end)::bigint as "period_end!", format,
                      extract(epoch from generated_at)::bigint as "generated_at!", content
               from report where id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let meta = StoredReport {
                id: r.id,
                scope: r.scope,
                period_start: r.period_start,
                period_end: r.period_end,
                format: r.format,
                generated_at: r.generated_at,
                bytes: r.content.len() as i64,
            };
            (meta, r.content)
        }))
    }

    /// The most recently generated reports, newest first.
    pub async fn recent_reports(&self, limit: i64) -> Result<Vec<StoredReport>> {
        let rows = sqlx::query!(
            r#"select id, scope, extract(epoch from period_start)::bigint as "period_start!",
                      extract(epoch from period_end)::bigint as "period_end!", format,
                      extract(epoch from generated_at)::bigint as "generated_at!", octet_length(content)::bigint as "bytes!"
               from report order by generated_at desc, id desc limit $1"#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredReport {
                id: r.id,
                scope: r.scope,
                period_start: r.period_start,
                period_end: r.period_end,
                format: r.format,
                generated_at: r.generated_at,
                bytes: r.bytes,
            })
            .collect())
    }
}
