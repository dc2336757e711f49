//! Rollups and retention: hourly mean, max, p95 and count computed from raw chunks into `rollup_chunk`,
//! old partitions dropped whole (raw ones only once their hours are rolled up), and history reads that
//! take rollups where raw samples are gone or finer than the caller asked for.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::Chunk;
use super::samples::decode_stored;
use super::{Result, Store, StoreError};

/// One hour per rollup point.
pub const HOUR_SECS: i64 = 3_600;
/// Span of one stored rollup chunk: 7 days of hourly points, aligned to the Unix epoch.
pub const ROLLUP_CHUNK_SECS: i64 = 7 * 86_400;
const DAY_SECS: i64 = 86_400;
/// Series read and rolled up together: bounds memory at about one day of raw samples per series.
const SERIES_BATCH: i64 = 1_000;

/// Which series a rollup covers.
#[derive(Debug, Clone, Copy)]
pub enum SeriesSelection<'a> {
    /// Every series with raw samples in the range.
    All,
    Ids(&'a [i64]),
}

/// The statistics of one series over one hour of raw samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyRollup {
    /// Start of the hour, Unix seconds.
    pub hour: i64,
    pub mean: f64,
    pub max: f64,
    /// 95th percentile, linearly interpolated between the closest ranks.
    pub p95: f64,
    /// Raw samples the hour held; weights the hour when hours are averaged together.
    pub count: u32,
}

/// Which rollup column stands for an hour in a history read: `Max` for peaks (memory, exhaustion),
/// `Mean` for usage (CPU, costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStat {
    Mean,
    Max,
}

/// What a rollup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Series that had raw samples in the range.
    pub series: u64,
    /// Hourly points that were not stored before or whose statistics changed.
    pub hours_written: u64,
    /// Rollup chunk rows inserted or rewritten.
    pub chunks_written: u64,
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// The rollup of the raw partitions that were about to be dropped.
    pub rolled_up: RollupStats,
    pub raw_partitions_dropped: Vec<String>,
    pub rollup_partitions_dropped: Vec<String>,
}

/// Assessment results deleted by one `prune_results` pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultsPruned {
    pub forecasts: u64,
    pub exhaustions: u64,
    pub recommendations: u64,
}

/// Rows deleted per statement, so a first pass over a large backlog never holds long locks.
const PRUNE_BATCH: i64 = 10_000;

/// Runs a batched delete until a batch comes back short; the rows deleted in all.
async fn drain<F, Fut>(mut delete: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<sqlx::postgres::PgQueryResult>>,
{
    let mut total = 0;
    loop {
        let n = delete().await?.rows_affected();
        total += n;
        if n < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// One partition of `sample_chunk` or `rollup_chunk` and the time range it holds, `[lo, hi)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub lo: i64,
    pub hi: i64,
}

fn floor_to(ts: i64, unit: i64) -> i64 {
    ts.div_euclid(unit) * unit
}

/// Hourly statistics of time-sorted samples, one per hour that holds at least one sample.
pub fn hourly_rollups(points: &[(i64, f64)]) -> Vec<HourlyRollup> {
    let mut out = Vec::new();
    let mut values = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let hour = floor_to(points[i].0, HOUR_SECS);
        values.clear();
        while i < points.len() && floor_to(points[i].0, HOUR_SECS) == hour {
            values.push(points[i].1);
            i += 1;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = 0.95 * (n - 1) as f64;
        let below = rank.floor() as usize;
        let above = (below + 1).min(n - 1);
        let p95 = values[below] + (values[above] - values[below]) * (rank - below as f64);
        out.push(HourlyRollup {
            hour,
            mean: values.iter().sum::<f64>() / n as f64,
            max: values[n - 1],
            p95,
            count: n as u32,
        });
    }
    out
}

fn rollups_to_chunk(hours: &[HourlyRollup]) -> Chunk {
    Chunk {
        ts: hours.iter().map(|h| h.hour).collect(),
        columns: vec![
            hours.iter().map(|h| h.mean as f32).collect(),
            hours.iter().map(|h| h.max as f32).collect(),
            hours.iter().map(|h| h.p95 as f32).collect(),
            hours.iter().map(|h| h.count as f32).collect(),
        ],
    }
}

fn chunk_to_rollups(chunk: &Chunk) -> Option<Vec<HourlyRollup>> {
    let [mean, max, p95, count] = chunk.columns.as_slice() else {
        return None;
    };
    Some(
        chunk
            .ts
            .iter()
            .enumerate()
            .map(|(i, &hour)| HourlyRollup {
                hour,
                mean: mean[i] as f64,
                max: max[i] as f64,
                p95: p95[i] as f64,
                count: count[i] as u32,
            })
            .collect(),
    )
}

/// Points of `newer` that `old` lacks or holds with other values in any column.
fn count_new_or_changed(old: &Chunk, newer: &Chunk) -> u64 {
    let mut n = 0;
    let mut i = 0;
    for (j, t) in newer.ts.iter().enumerate() {
        while i < old.ts.len() && old.ts[i] < *t {
            i += 1;
        }
        let same = i < old.ts.len()
            && old.ts[i] == *t
            && old
                .columns
                .iter()
                .zip(&newer.columns)
                .all(|(a, b)| a[i].to_bits() == b[j].to_bits());
        if !same {
            n += 1;
        }
    }
    n
}

/// One series' history for a read: raw samples where they were read and hold the hour, rollups for every
/// other hour. Returns `(timestamp, value, weight)`, weight being how many raw samples a point stands for.
pub fn merge_by_hour(
    raw: &[(i64, f64)],
    rollups: &[HourlyRollup],
    stat: HistoryStat,
) -> Vec<(i64, f64, f64)> {
    let raw_hours: BTreeSet<i64> = raw.iter().map(|p| floor_to(p.0, HOUR_SECS)).collect();
    let mut out: Vec<(i64, f64, f64)> = raw.iter().map(|&(t, v)| (t, v, 1.0)).collect();
    out.extend(
        rollups
            .iter()
            .filter(|r| !raw_hours.contains(&r.hour))
            .map(|r| {
                let v = match stat {
                    HistoryStat::Mean => r.mean,
                    HistoryStat::Max => r.max,
                };
                (r.hour, v, f64::from(r.count.max(1)))
            }),
    );
    out.sort_by_key(|p| p.0);
    out
}

/// The bucket width and origin that fit `[from, to)` into `max_points` buckets. Widths of an hour or
/// more are whole hours on hour boundaries, so each hourly rollup falls into exactly one bucket.
fn bucket_grid(from: i64, to: i64, max_points: usize) -> (i64, i64) {
    let n = max_points.max(1) as i64;
    let span = (to - from).max(1);
    let step = (span + n - 1) / n;
    if step < HOUR_SECS {
        return (from, step.max(1));
    }
    let origin = floor_to(from, HOUR_SECS);
    let step = (to - origin + n - 1) / n;
    (origin, (step + HOUR_SECS - 1) / HOUR_SECS * HOUR_SECS)
}

/// Reduces weighted points to at most `max_points` buckets over `[from, to)`: the weighted mean or the
/// max of each non-empty bucket, stamped with the bucket's start. Fewer points pass through unchanged.
pub fn downsample(
    points: &[(i64, f64, f64)],
    from: i64,
    to: i64,
    max_points: usize,
    stat: HistoryStat,
) -> Vec<(i64, f64)> {
    if points.len() <= max_points.max(1) {
        return points.iter().map(|&(t, v, _)| (t, v)).collect();
    }
    let (origin, step) = bucket_grid(from, to, max_points);
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let bucket = origin + (points[i].0 - origin).div_euclid(step) * step;
        let (mut sum, mut weight, mut max) = (0.0, 0.0, f64::NEG_INFINITY);
        while i < points.len() && points[i].0 < bucket + step {
            let (_, v, w) = points[i];
            sum += v * w;
            weight += w;
            max = max.max(v);
            i += 1;
        }
        out.push(match stat {
            HistoryStat::Mean => (bucket, sum / weight),
            HistoryStat::Max => (bucket, max),
        });
    }
    out
}

impl Store {
    /// Computes the hourly rollups of the selected series for the hours in `[from, to)` (both floored to
    /// the hour) from their raw samples, and merges them into `rollup_chunk`. Idempotent: hours whose
    /// statistics are already stored write nothing, hours whose raw samples changed are rewritten, and
    /// hours without raw samples (dropped, or never scraped) keep whatever rollup they have.
    pub async fn rollup(
        &self,
        series: SeriesSelection<'_>,
        from: i64,
        to: i64,
    ) -> Result<RollupStats> {
        let (from, to) = (floor_to(from, HOUR_SECS), floor_to(to, HOUR_SECS));
        let mut stats = RollupStats::default();
        if from >= to {
            return Ok(stats);
        }
        match series {
            SeriesSelection::Ids(ids) => {
                for batch in ids.chunks(SERIES_BATCH as usize) {
                    self.rollup_batch(batch, from, to, &mut stats).await?;
                }
            }
            SeriesSelection::All => {
                let mut after = i64::MIN;
                loop {
                    let batch = sqlx::query_scalar!(
                        r#"select distinct series_id from sample_chunk
                           where chunk_start >= to_timestamp($1) and chunk_start < to_timestamp($2)
                             and series_id > $3
                           order by series_id
                           limit $4"#,
                        floor_to(from, super::CHUNK_SECS) as f64,
                        to as f64,
                        after,
                        SERIES_BATCH
                    )
                    .fetch_all(&self.pool)
                    .await?;
                    let Some(&last) = batch.last() else { break };
                    self.rollup_batch(&batch, from, to, &mut stats).await?;
                    after = last;
                }
            }
        }
        Ok(stats)
    }

    async fn rollup_batch(
        &self,
        ids: &[i64],
        from: i64,
        to: i64,
        stats: &mut RollupStats,
    ) -> Result<()> {
        // A day of raw samples at a time, so a month-long first rollup does not hold a month in memory.
        let mut hours: BTreeMap<i64, Vec<HourlyRollup>> = BTreeMap::new();
        let mut lo = from;
        while lo < to {
            let hi = (lo + DAY_SECS).min(to);
            for (id, points) in self.read_samples_many(ids, lo, hi).await? {
                hours.entry(id).or_default().extend(hourly_rollups(&points));
            }
            lo = hi;
        }
        stats.series += hours.len() as u64;
        let mut incoming: BTreeMap<(i64, i64), Vec<HourlyRollup>> = BTreeMap::new();
        for (id, series_hours) in hours {
            for h in series_hours {
                incoming
                    .entry((id, floor_to(h.hour, ROLLUP_CHUNK_SECS)))
                    .or_default()
                    .push(h);
            }
        }
        if incoming.is_empty() {
            return Ok(());
        }
        let lo = incoming.keys().map(|k| k.1).min().unwrap_or(from);
        let hi = incoming.keys().map(|k| k.1).max().unwrap_or(from);
        self.ensure_partitions("rollup_chunk", lo, hi, DAY_SECS)
            .await?;
        let incoming: Vec<((i64, i64), Chunk)> = incoming
            .into_iter()
            .map(|(key, h)| (key, rollups_to_chunk(&h)))
            .collect();
        // Two replicas inserting the same new chunk: the loser retries the batch as a merge.
        for _attempt in 0..5 {
            if let Some((hours_written, chunks_written)) = self.try_write_rollups(&incoming).await?
            {
                stats.hours_written += hours_written;
                stats.chunks_written += chunks_written;
                return Ok(());
            }
        }
        Err(StoreError::Contention)
    }

    /// Merges rollup chunks into `rollup_chunk` in one transaction; `None` when a concurrent writer
    /// inserted one of the new chunks first.
    async fn try_write_rollups(
        &self,
        incoming: &[((i64, i64), Chunk)],
    ) -> Result<Option<(u64, u64)>> {
        let ids: Vec<i64> = incoming.iter().map(|(k, _)| k.0).collect();
        let starts: Vec<i64> = incoming.iter().map(|(k, _)| k.1).collect();
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query!(
            r#"select c.series_id, extract(epoch from c.chunk_start)::bigint as "chunk_start!", c.data
               from rollup_chunk c
               join unnest($1::bigint[], $2::bigint[]) as k(series_id, start)
                 on c.series_id = k.series_id and c.chunk_start = to_timestamp(k.start)
               order by c.series_id, c.chunk_start
               for update of c"#,
            &ids,
            &starts
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut stored: BTreeMap<(i64, i64), Chunk> = BTreeMap::new();
        for row in existing {
            let chunk = decode_stored(row.series_id, row.chunk_start, &row.data)?;
            stored.insert((row.series_id, row.chunk_start), chunk);
        }

        let mut hours_written = 0;
        let (mut ins, mut upd) = (ChunkRows::default(), ChunkRows::default());
        for (key, chunk) in incoming {
            match stored.get_mut(key) {
                None => {
                    hours_written += chunk.len() as u64;
                    ins.push(*key, chunk);
                }
                Some(old) => {
                    let changed = count_new_or_changed(old, chunk);
                    if old.merge(chunk) {
                        hours_written += changed;
                        upd.push(*key, old);
                    }
                }
            }
        }
        if !ins.ids.is_empty() {
            let inserted = sqlx::query_scalar!(
                r#"insert into rollup_chunk (series_id, chunk_start, n_points, last_ts, data)
                   select s, to_timestamp(c), n, to_timestamp(l), d
                   from unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bytea[]) as t(s, c, n, l, d)
                   on conflict (series_id, chunk_start) do nothing
                   returning 1 as "one!""#,
                &ins.ids,
                &ins.starts,
                &ins.n,
                &ins.last,
                &ins.data
            )
            .fetch_all(&mut *tx)
            .await?;
            if inserted.len() != ins.ids.len() {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        if !upd.ids.is_empty() {
            sqlx::query!(
                r#"update rollup_chunk c
                   set n_points = t.n, last_ts = to_timestamp(t.l), data = t.d
                   from unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bytea[]) as t(s, st, n, l, d)
                   where c.series_id = t.s and c.chunk_start = to_timestamp(t.st)"#,
                &upd.ids,
                &upd.starts,
                &upd.n,
                &upd.last,
                &upd.data
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some((
            hours_written,
            (ins.ids.len() + upd.ids.len()) as u64,
        )))
    }

    /// Hourly rollups of several series with `from <= hour < to`, each in time order.
    pub async fn read_rollups(
        &self,
        series_ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Vec<HourlyRollup>>> {
        let rows = sqlx::query!(
            r#"select series_id, extract(epoch from chunk_start)::bigint as "chunk_start!", data
               from rollup_chunk
               where series_id = any($1) and chunk_start >= to_timestamp($2) and chunk_start < to_timestamp($3)
               order by series_id, chunk_start"#,
            series_ids,
            floor_to(from, ROLLUP_CHUNK_SECS) as f64,
            to as f64
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<i64, Vec<HourlyRollup>> = BTreeMap::new();
        for row in rows {
            let chunk = decode_stored(row.series_id, row.chunk_start, &row.data)?;
            let hours = chunk_to_rollups(&chunk).ok_or(StoreError::Corrupt {
                series_id: row.series_id,
                chunk_start: row.chunk_start,
                source: super::codec::CodecError::Inconsistent("a rollup chunk needs 4 columns"),
            })?;
            out.entry(row.series_id)
                .or_default()
                .extend(hours.into_iter().filter(|h| h.hour >= from && h.hour < to));
        }
        Ok(out)
    }

    /// History of several series over `[from, to)` in at most `max_points` points each, whatever the
    /// range: raw samples where they exist, hourly rollups (`stat` picks the column) where raw samples
    /// were dropped. When the range is long enough that a point covers an hour or more, hours already
    /// rolled up for every series (before the rollup mark) are read from rollups instead of raw chunks,
    /// which is what makes a year-long read cheap. Points are bucketed (weighted mean or max) only when
    /// there are more than `max_points`.
    pub async fn read_history(
        &self,
        series_ids: &[i64],
        from: i64,
        to: i64,
        max_points: usize,
        stat: HistoryStat,
    ) -> Result<BTreeMap<i64, Vec<(i64, f64)>>> {
        let mut out = BTreeMap::new();
        if from >= to || series_ids.is_empty() {
            return Ok(out);
        }
        let raw_floor = self
            .partitions("sample_chunk")
            .await?
            .iter()
            .map(|p| p.lo)
            .min()
            .unwrap_or(i64::MAX);
        let (_, step) = bucket_grid(from, to, max_points);
        let raw_from = if step >= HOUR_SECS {
            self.rollup_mark().await?.unwrap_or(i64::MIN).max(raw_floor)
        } else {
            raw_floor
        }
        .max(from);
        let mut rollups = self.read_rollups(series_ids, from, to).await?;
        let mut raw = if raw_from < to {
            self.read_samples_many(series_ids, raw_from, to).await?
        } else {
            BTreeMap::new()
        };
        for &id in series_ids {
            let r = raw.remove(&id).unwrap_or_default();
            let u = rollups.remove(&id).unwrap_or_default();
            let merged = merge_by_hour(&r, &u, stat);
            if !merged.is_empty() {
                out.insert(id, downsample(&merged, from, to, max_points, stat));
            }
        }
        Ok(out)
    }

    /// Rolls up every series from the rollup mark (or the oldest raw partition) up to `until`, but never
    /// past a scraper's high-water mark (a later sample could still arrive for such an hour), then moves
    /// the mark. The daemon calls this on a timer; running it again right away does nothing.
    pub async fn rollup_pending(&self, until: i64) -> Result<RollupStats> {
        let scraped = sqlx::query_scalar!(
            r#"select extract(epoch from min(high_water))::bigint as "until" from scrape_mark"#
        )
        .fetch_one(&self.pool)
        .await?;
        let to = floor_to(until.min(scraped.unwrap_or(i64::MAX)), HOUR_SECS);
        let from = match self.rollup_mark().await? {
            Some(mark) => mark,
            None => match self
                .partitions("sample_chunk")
                .await?
                .iter()
                .map(|p| p.lo)
                .min()
            {
                Some(lo) => lo,
                None => return Ok(RollupStats::default()),
            },
        };
        if from >= to {
            return Ok(RollupStats::default());
        }
        let stats = self.rollup(SeriesSelection::All, from, to).await?;
        sqlx::query!(
            r#"insert into rollup_mark (id, rolled_until) values (true, to_timestamp($1))
               on conflict (id) do update
               set rolled_until = greatest(rollup_mark.rolled_until, excluded.rolled_until), updated_at = now()"#,
            to as f64
        )
        .execute(&self.pool)
        .await?;
        Ok(stats)
    }

    /// Unix seconds before which every series is rolled up, if `rollup_pending` ever ran.
    pub async fn rollup_mark(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar!(
            r#"select extract(epoch from rolled_until)::bigint as "mark!" from rollup_mark"#
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Drops whole partitions that are entirely older than the windows: raw partitions whose day ended
    /// `raw_days` before `now` (after rolling them up, so nothing is lost), rollup partitions whose last
    /// chunk ended `rollup_days` before `now`. Never deletes rows. A second run drops nothing and writes
    /// nothing. Rollups are kept at least as long as raw samples, whatever `rollup_days` says.
    pub async fn apply_retention(
        &self,
        now: i64,
        raw_days: u64,
        rollup_days: u64,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let days = |d: u64| i64::try_from(d).unwrap_or(i64::MAX / DAY_SECS).min(1 << 30) * DAY_SECS;
        let raw_cutoff = now.saturating_sub(days(raw_days));
        let rollup_cutoff = now.saturating_sub(days(rollup_days.max(raw_days)));

        let old_raw: Vec<Partition> = self
            .partitions("sample_chunk")
            .await?
            .into_iter()
            .filter(|p| p.hi <= raw_cutoff)
            .collect();
        if let (Some(lo), Some(hi)) = (
            old_raw.iter().map(|p| p.lo).min(),
            old_raw.iter().map(|p| p.hi).max(),
        ) {
            report.rolled_up = self.rollup(SeriesSelection::All, lo, hi).await?;
        }
        for p in old_raw {
            if self.drop_partition("sample_chunk", &p).await? {
                report.raw_partitions_dropped.push(p.name);
            }
        }

        // A rollup chunk starting on a partition's last day reaches 7 days past the partition's end.
        for p in self.partitions("rollup_chunk").await? {
            if p.hi.saturating_add(ROLLUP_CHUNK_SECS) <= rollup_cutoff
                && self.drop_partition("rollup_chunk", &p).await?
            {
                report.rollup_partitions_dropped.push(p.name);
            }
        }
        Ok(report)
    }

    /// Deletes forecasts, exhaustion estimates and recommendations computed more than `results_days`
    /// before `now`, except the newest of each series (and threshold) or container and resource, so a
    /// workload that is no longer assessed keeps its last results. In batches; a second run deletes nothing.
    /// Each statement marks its own transaction `headroom.superseded_only` (migration 0014), so these
    /// deletes, which no workload detail can see, do not empty the replicas' detail caches.
    pub async fn prune_results(&self, now: i64, results_days: u64) -> Result<ResultsPruned> {
        let days = i64::try_from(results_days).unwrap_or(1 << 30).min(1 << 30);
        let cutoff = now.saturating_sub(days.saturating_mul(DAY_SECS)) as f64;
        Ok(ResultsPruned {
            forecasts: drain(|| {
                sqlx::query!(
                    r#"with quiet as (select set_config('headroom.superseded_only', 'on', true))
                       delete from forecast where exists (select 1 from quiet) and id in (
                           select f.id from forecast f
                           where f.computed_at < to_timestamp($1)
                             and exists (select 1 from forecast n
                                         where n.series_id = f.series_id and n.computed_at > f.computed_at)
                           limit $2)"#,
                    cutoff,
                    PRUNE_BATCH
                )
                .execute(&self.pool)
            })
            .await?,
            exhaustions: drain(|| {
                sqlx::query!(
                    r#"with quiet as (select set_config('headroom.superseded_only', 'on', true))
                       delete from exhaustion where exists (select 1 from quiet) and id in (
                           select e.id from exhaustion e
                           where e.computed_at < to_timestamp($1)
                             and exists (select 1 from exhaustion n
                                         where n.series_id = e.series_id and n.threshold_kind = e.threshold_kind
                                           and n.computed_at > e.computed_at)
                           limit $2)"#,
                    cutoff,
                    PRUNE_BATCH
                )
                .execute(&self.pool)
            })
            .await?,
            recommendations: drain(|| {
                sqlx::query!(
                    r#"with quiet as (select set_config('headroom.superseded_only', 'on', true))
                       delete from recommendation where exists (select 1 from quiet) and id in (
                           select r.id from recommendation r
                           where r.computed_at < to_timestamp($1)
                             and exists (select 1 from recommendation n
                                         where n.container_id = r.container_id and n.resource = r.resource
                                           and n.computed_at > r.computed_at)
                           limit $2)"#,
                    cutoff,
                    PRUNE_BATCH
                )
                .execute(&self.pool)
            })
            .await?,
        })
    }

    async fn drop_partition(&self, parent: &'static str, p: &Partition) -> Result<bool> {
        let dropped = sqlx::query_scalar!(
            r#"select drop_partition($1, $2) as "dropped!""#,
            parent,
            p.name
        )
        .fetch_one(&self.pool)
        .await?;
        // This process' writers must call ensure_partitions again if a late sample lands in these days.
        let mut known = self
            .known_partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for day in p.lo.div_euclid(DAY_SECS)..p.hi.div_euclid(DAY_SECS) {
            known.remove(&(parent, day));
        }
        Ok(dropped)
    }

    /// The partitions of `sample_chunk` or `rollup_chunk` with their bounds, oldest first; a partition
    /// without finite bounds (a default partition) is left out.
    pub async fn partitions(&self, parent: &str) -> Result<Vec<Partition>> {
        // The bound expression's timestamps print in the session's time zone; casting them back in the
        // same session reads them correctly whatever that zone is.
        let rows = sqlx::query!(
            r#"select c.relname::text as "name!",
                      extract(epoch from substring(b.bound from 'FROM \(''([^'']+)''\)')::timestamptz)::bigint as lo,
                      extract(epoch from substring(b.bound from 'TO \(''([^'']+)''\)')::timestamptz)::bigint as hi
               from pg_inherits i
               join pg_class c on c.oid = i.inhrelid
               cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
               where i.inhparent = $1::text::regclass
               order by 2"#,
            parent
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Partition {
                    name: r.name,
                    lo: r.lo?,
                    hi: r.hi?,
                })
            })
            .collect())
    }
}

/// Column arrays of chunk rows for one `unnest` statement.
#[derive(Default)]
struct ChunkRows {
    ids: Vec<i64>,
    starts: Vec<i64>,
    n: Vec<i32>,
    last: Vec<i64>,
    data: Vec<Vec<u8>>,
}

impl ChunkRows {
    fn push(&mut self, key: (i64, i64), chunk: &Chunk) {
        self.ids.push(key.0);
        self.starts.push(key.1);
        self.n.push(chunk.len() as i32);
        self.last.push(*chunk.ts.last().unwrap_or(&key.1));
        self.data.push(chunk.encode());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_rollups_give_mean_max_interpolated_p95_and_count_per_hour() {
        // Hour 0: values 1..=20; hour 1: a single value.
        let mut points: Vec<(i64, f64)> = (0..20).map(|i| (i * 60, (20 - i) as f64)).collect();
        points.push((3_600 + 30, 7.5));
        let r = hourly_rollups(&points);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].hour, r[0].count), (0, 20));
        assert_eq!(r[0].mean, 10.5);
        assert_eq!(r[0].max, 20.0);
        // rank 0.95 * 19 = 18.05 between 19 and 20.
        assert!((r[0].p95 - 19.05).abs() < 1e-9, "{}", r[0].p95);
        assert_eq!(
            r[1],
            HourlyRollup {
                hour: 3_600,
                mean: 7.5,
                max: 7.5,
                p95: 7.5,
                count: 1
            }
        );
    }

    #[test]
    fn rollup_chunks_round_trip_through_the_codec() {
        // Values whose statistics are exact in the stored 32-bit floats: 1, 3 -> p95 2.9 would not be.
        let hours = hourly_rollups(&[(0, 1.0), (60, 21.0), (7_200, 2.0)]);
        assert_eq!(hours[0].p95, 20.0);
        let chunk = Chunk::decode(&rollups_to_chunk(&hours).encode()).unwrap();
        assert_eq!(chunk_to_rollups(&chunk).unwrap(), hours);
        assert!(chunk_to_rollups(&Chunk::from_points(&[(0, 1.0)])).is_none());
    }

    #[test]
    fn merge_prefers_raw_samples_and_fills_hours_without_them_from_rollups() {
        let rollups = hourly_rollups(&[(0, 4.0), (60, 8.0), (3_600, 1.0), (3_660, 3.0)]);
        let raw = [(3_600, 1.0), (3_660, 3.0)];
        let merged = merge_by_hour(&raw, &rollups, HistoryStat::Max);
        assert_eq!(
            merged,
            vec![(0, 8.0, 2.0), (3_600, 1.0, 1.0), (3_660, 3.0, 1.0)]
        );
    }

    #[test]
    fn downsampling_weights_rollup_hours_by_their_sample_count() {
        // One rollup hour of 60 samples at mean 1.0 and one raw sample at 4.0 in the same 2-hour bucket.
        let points = [(0, 1.0, 60.0), (3_600, 4.0, 1.0), (7_200, 9.0, 1.0)];
        let mean = downsample(&points, 0, 4 * 3_600, 2, HistoryStat::Mean);
        assert_eq!(mean.len(), 2);
        assert_eq!(mean[0].0, 0);
        assert!((mean[0].1 - 64.0 / 61.0).abs() < 1e-12);
        assert_eq!(mean[1], (7_200, 9.0));
        let max = downsample(&points, 0, 4 * 3_600, 2, HistoryStat::Max);
        assert_eq!(max, vec![(0, 4.0), (7_200, 9.0)]);
    }

    #[test]
    fn downsampling_never_returns_more_than_max_points() {
        let points: Vec<(i64, f64, f64)> = (0..10_000).map(|i| (i * 37 + 11, 1.0, 1.0)).collect();
        for max_points in [1, 2, 7, 100, 999, 5_000] {
            let out = downsample(&points, 5, 370_011, max_points, HistoryStat::Mean);
            assert!(out.len() <= max_points, "{} > {max_points}", out.len());
            assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn changed_points_are_counted_in_any_column() {
        let a = rollups_to_chunk(&hourly_rollups(&[(0, 1.0), (3_600, 2.0)]));
        let b = rollups_to_chunk(&hourly_rollups(&[(0, 1.0), (3_600, 2.0), (3_660, 5.0)]));
        assert_eq!(count_new_or_changed(&a, &a), 0);
        assert_eq!(count_new_or_changed(&a, &b), 1);
    }
}
