//! Raw samples: idempotent chunked writes and range reads.

use std::collections::BTreeMap;

use std::ops::DerefMut;

use sqlx::postgres::{PgConnection, PgCopyIn};

use super::codec::{Chunk, ChunkRow, StorageSize};
use super::points::{Point, Run, SamplePoints};
use super::{Result, Store, StoreError};

/// Span of one stored chunk: 6 hours, aligned to the Unix epoch.
pub const CHUNK_SECS: i64 = 6 * 3_600;
const DAY_SECS: i64 = 86_400;
/// The SQLSTATE of a row that no partition takes (check_violation).
const NO_PARTITION: &str = "23514";
/// Unix seconds of 9999-12-31, the widest range a read is clamped to.
const TS_BOUND: i64 = 253_402_300_799;

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Samples in the batch that were not stored before (or whose value changed).
    pub samples_written: u64,
    /// Chunk rows inserted or rewritten.
    pub chunks_written: u64,
}

/// A stored chunk's data (raw or rollup), decoded; a chunk that does not decode is named.
pub(super) fn decode_stored(series_id: i64, chunk_start: i64, data: &[u8]) -> Result<Chunk> {
    Chunk::decode(data).map_err(|source| StoreError::Corrupt {
        series_id,
        chunk_start,
        source,
    })
}

fn chunk_start(ts: i64) -> i64 {
    ts.div_euclid(CHUNK_SECS) * CHUNK_SECS
}

impl Store {
    /// Stores samples of many series at once. Idempotent: samples already stored are not stored again, and
    /// a batch that brings nothing new writes nothing. Input needs no order; within the batch the last
    /// value for a timestamp wins. Non-finite values are dropped (Prometheus' stale markers and NaNs).
    pub async fn write_samples<P: SamplePoints + Sync>(
        &self,
        batch: &[(i64, P)],
    ) -> Result<WriteStats> {
        self.write(batch, false).await
    }

    /// `write_samples` for a batch expected to fall only in chunks not stored yet (a backfill window
    /// that starts on a chunk boundary past the high-water mark). The chunks are copied in without first
    /// looking up the ones they fall in, which is most of Postgres' work besides the copy. Should one
    /// exist after all (a write whose mark was not saved, another writer), the key refuses the copy, which
    /// leaves nothing behind, and the batch is written the careful way: the outcome is the same.
    pub async fn write_new_samples<P: SamplePoints + Sync>(
        &self,
        batch: &[(i64, P)],
    ) -> Result<WriteStats> {
        self.write(batch, true).await
    }

    async fn write<P: SamplePoints + Sync>(
        &self,
        batch: &[(i64, P)],
        blind: bool,
    ) -> Result<WriteStats> {
        if blind {
            match self.try_copy_new(batch).await {
                Ok(Some(stats)) => return Ok(stats),
                Ok(None) => {}
                // A partition this process thought it had was dropped: the careful way makes it again.
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if e.code().as_deref() == Some(NO_PARTITION) => {}
                Err(e) => return Err(e),
            }
        }
        let incoming = chunks_of(batch);
        if incoming.is_empty() {
            return Ok(WriteStats::default());
        }
        let lo = incoming.iter().map(|c| c.0.1).min().unwrap_or(0);
        let hi = incoming.iter().map(|c| c.0.1).max().unwrap_or(0);
        self.ensure_partitions("sample_chunk", lo, hi, DAY_SECS)
            .await?;
        // Two writers creating the same new chunk: the loser's copy meets the key, and the whole batch is
        // retried as a merge, so neither loses samples.
        for _attempt in 0..5 {
            match self.try_write_chunks(&incoming, (lo, hi)).await {
                Ok(Some(stats)) => return Ok(stats),
                Ok(None) => {}
                // Another replica's retention dropped a partition this process thought it had: forget
                // what it knows and create them again.
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if e.code().as_deref() == Some(NO_PARTITION) =>
                {
                    self.known_partitions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                    self.ensure_partitions("sample_chunk", lo, hi, DAY_SECS)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Contention)
    }

    /// The copy of `write_new_samples`, in one transaction, each series' points cut into chunks as they
    /// are encoded. None, with nothing written, if the batch is not that simple (a series twice, points
    /// out of order or not finite) or one of its chunks exists.
    async fn try_copy_new<P: SamplePoints + Sync>(
        &self,
        batch: &[(i64, P)],
    ) -> Result<Option<WriteStats>> {
        let mut ids: Vec<i64> = batch.iter().map(|b| b.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let simple = ids.len() == batch.len() && batch.iter().all(|(_, p)| p.is_simple());
        let ends = || batch.iter().filter_map(|(_, p)| p.ends());
        let (Some(lo), Some(hi)) = (
            ends().map(|e| chunk_start(e.0)).min(),
            ends().map(|e| chunk_start(e.1)).max(),
        ) else {
            return Ok(Some(WriteStats::default()));
        };
        if !simple {
            return Ok(None);
        }
        self.ensure_partitions("sample_chunk", lo, hi, DAY_SECS)
            .await?;
        // Rows go out a megabyte at a time as they are encoded, so Postgres stores one piece while the
        // next is encoded, and the buffer stays small however large the batch.
        let mut tx = self.pool.begin().await?;
        let mut copy = CopyBuffer::with_capacity(2 * CopyBuffer::PIECE);
        let mut scratch = Vec::new();
        let copied = async {
            let mut c = tx.copy_in_raw(COPY_SAMPLE_CHUNK).await?;
            for (series_id, points) in batch {
                points.for_each_run(CHUNK_SECS, &mut scratch, |run| copy.run(*series_id, run));
                if copy.buf.len() >= CopyBuffer::PIECE {
                    copy.send_piece(&mut c).await?;
                }
            }
            copy.send_end(&mut c).await?;
            c.finish().await
        }
        .await;
        if !copied_or_exists(copied)? {
            return Ok(None);
        }
        let stats = WriteStats {
            samples_written: copy.samples,
            chunks_written: copy.rows,
        };
        tx.commit().await?;
        Ok(Some(stats))
    }

    /// Writes the chunks in one transaction, merging those that exist; `(lo, hi)` are their earliest and
    /// latest chunk starts. None, with nothing written, if another writer created one of them meanwhile.
    async fn try_write_chunks(
        &self,
        incoming: &[((i64, i64), Chunk)],
        (lo, hi): (i64, i64),
    ) -> Result<Option<WriteStats>> {
        let mut tx = self.pool.begin().await?;
        let mut stored = self.lock_stored(&mut tx, incoming, (lo, hi)).await?;
        let mut stats = WriteStats::default();
        // Brand-new chunks go in with one binary COPY, the cheapest way into Postgres; chunks that exist
        // are merged and rewritten with one update.
        let mut copy = CopyBuffer::with_capacity(
            incoming
                .iter()
                .map(|(_, c)| CopyBuffer::ROW_BYTES + c.encoded_len_hint())
                .sum(),
        );
        let (mut upd_ids, mut upd_starts, mut upd_n, mut upd_last, mut upd_data) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (key, chunk) in incoming {
            match stored.get_mut(key) {
                None => {
                    stats.samples_written += chunk.len() as u64;
                    copy.chunk(key.0, key.1, chunk);
                }
                Some(old) => {
                    let before = old.len();
                    let value_changes = count_changed(old, chunk);
                    if old.merge(chunk) {
                        stats.samples_written += (old.len() - before) as u64 + value_changes;
                        upd_ids.push(key.0);
                        upd_starts.push(key.1);
                        upd_n.push(old.len() as i32);
                        upd_last.push(*old.ts.last().unwrap_or(&key.1));
                        upd_data.push(old.encode());
                    }
                }
            }
        }

        let new_rows = copy.rows;
        // Another writer created one of these chunks since they were read: merge instead.
        if new_rows > 0 && !copy_into(&mut tx, copy).await? {
            return Ok(None);
        }
        if !upd_ids.is_empty() {
            sqlx::query!(
                r#"update sample_chunk c
                   set n_samples = t.n, last_ts = to_timestamp(t.l), data = t.d
                   from unnest($1::bigint[], $2::bigint[], $3::int[], $4::bigint[], $5::bytea[]) as t(s, st, n, l, d)
                   where c.series_id = t.s and c.chunk_start = to_timestamp(t.st)"#,
                &upd_ids,
                &upd_starts,
                &upd_n,
                &upd_last,
                &upd_data
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        stats.chunks_written = new_rows + upd_ids.len() as u64;
        Ok(Some(stats))
    }

    /// The stored chunks among `incoming`'s, locked until the transaction ends, decoded.
    async fn lock_stored(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        incoming: &[((i64, i64), Chunk)],
        (lo, hi): (i64, i64),
    ) -> Result<BTreeMap<(i64, i64), Chunk>> {
        let ids: Vec<i64> = incoming.iter().map(|(k, _)| k.0).collect();
        let starts: Vec<i64> = incoming.iter().map(|(k, _)| k.1).collect();
        // The bounds let Postgres skip the day partitions the batch cannot touch; without them every
        // key is looked up in every partition.
        let existing = sqlx::query!(
            r#"select c.series_id, extract(epoch from c.chunk_start)::bigint as "chunk_start!", c.data
               from sample_chunk c
               join unnest($1::bigint[], $2::bigint[]) as k(series_id, start)
                 on c.series_id = k.series_id and c.chunk_start = to_timestamp(k.start)
               where c.chunk_start >= to_timestamp($3) and c.chunk_start <= to_timestamp($4)
               order by c.series_id, c.chunk_start
               for update of c"#,
            &ids,
            &starts,
            lo as f64,
            hi as f64
        )
        .fetch_all(&mut **tx)
        .await?;
        let mut stored = BTreeMap::new();
        for row in existing {
            let chunk = decode_stored(row.series_id, row.chunk_start, &row.data)?;
            stored.insert((row.series_id, row.chunk_start), chunk);
        }

        Ok(stored)
    }

    /// Samples of one series with `from <= ts < to`, in time order.
    pub async fn read_samples(
        &self,
        series_id: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, f64)>> {
        let mut out = self.read_samples_many(&[series_id], from, to).await?;
        Ok(out.remove(&series_id).unwrap_or_default())
    }

    /// Samples of several series with `from <= ts < to`, each in time order.
    pub async fn read_samples_many(
        &self,
        series_ids: &[i64],
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, Vec<(i64, f64)>>> {
        // Postgres timestamps end in the year 294276; callers may pass open bounds like i64::MAX.
        let (from, to) = (
            from.clamp(-TS_BOUND, TS_BOUND),
            to.clamp(-TS_BOUND, TS_BOUND),
        );
        let rows = sqlx::query!(
            r#"select series_id, extract(epoch from chunk_start)::bigint as "chunk_start!", data
               from sample_chunk
               where series_id = any($1) and chunk_start >= to_timestamp($2) and chunk_start < to_timestamp($3)
               order by series_id, chunk_start"#,
            series_ids,
            chunk_start(from) as f64,
            to as f64
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for row in rows {
            let chunk = decode_stored(row.series_id, row.chunk_start, &row.data)?;
            out.entry(row.series_id)
                .or_default()
                .extend(chunk.points().filter(|(t, _)| *t >= from && *t < to));
        }
        Ok(out)
    }

    /// Number of stored samples of one series in `[from, to)`; cheap enough for tests and checks.
    pub async fn count_samples(&self, series_id: i64, from: i64, to: i64) -> Result<usize> {
        Ok(self.read_samples(series_id, from, to).await?.len())
    }

    /// Makes sure the partitions of `table` covering `[lo, hi]` exist.
    pub(super) async fn ensure_partitions(
        &self,
        table: &'static str,
        lo: i64,
        hi: i64,
        unit_secs: i64,
    ) -> Result<()> {
        let first = lo.div_euclid(unit_secs);
        let last = hi.div_euclid(unit_secs);
        let missing = {
            let known = self
                .known_partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            (first..=last).any(|p| !known.contains(&(table, p)))
        };
        if !missing {
            return Ok(());
        }
        sqlx::query_scalar!(
            r#"select ensure_partitions($1, to_timestamp($2), to_timestamp($3)) as "created!""#,
            table,
            lo as f64,
            hi as f64
        )
        .fetch_one(&self.pool)
        .await?;
        let mut known = self
            .known_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.extend((first..=last).map(|p| (table, p)));
        Ok(())
    }
}

/// Timestamps present in both chunks whose value differs: rewrites, not new samples.
fn count_changed(old: &Chunk, new: &Chunk) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < old.ts.len() && j < new.ts.len() {
        match old.ts[i].cmp(&new.ts[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if old.columns[0][i].to_bits() != new.columns[0][j].to_bits() {
                    n += 1;
                }
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// The batch as chunks, ordered by (series, chunk start) so that concurrent writers lock and insert rows
/// in the same order. Samples of a series may come in any order and more than once (the last value for a
/// timestamp wins); non-finite values are dropped (Prometheus' stale markers and NaNs).
fn chunks_of<P: SamplePoints>(batch: &[(i64, P)]) -> Vec<((i64, i64), Chunk)> {
    // Usually each series comes once, in time order: then its points are cut into chunks as they are.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].0);
    let mut out = Vec::new();
    let (mut merged, mut scratch): (Vec<Point>, Vec<Point>) = (Vec::new(), Vec::new());
    let mut cut = |series_id: i64, run: Run<'_>| {
        let start = run.ends().map_or(0, |e| chunk_start(e.0));
        out.push(((series_id, start), Chunk::from_run(run)));
    };
    for same in order.chunk_by(|&a, &b| batch[a].0 == batch[b].0) {
        let series_id = batch[same[0]].0;
        let single = &batch[same[0]].1;
        if same.len() == 1 && single.is_simple() {
            single.for_each_run(CHUNK_SECS, &mut scratch, |run| cut(series_id, run));
            continue;
        }
        merged.clear();
        for &i in same {
            merged.extend(batch[i].1.points().filter(|p| p.1.is_finite()));
        }
        // Stable, so equal timestamps stay in batch order and the last one is kept.
        merged.sort_by_key(|p| p.0);
        merged.reverse();
        merged.dedup_by_key(|p| p.0);
        merged.reverse();
        merged.for_each_run(CHUNK_SECS, &mut scratch, |run| cut(series_id, run));
    }
    out
}

/// Copies the rows in; false if one of their chunks exists (Postgres then aborted the transaction, which
/// the caller drops: that rolls it back).
async fn copy_into(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    mut rows: CopyBuffer,
) -> Result<bool> {
    let copied = async {
        let mut c = tx.copy_in_raw(COPY_SAMPLE_CHUNK).await?;
        rows.send_end(&mut c).await?;
        c.finish().await
    }
    .await;
    copied_or_exists(copied)
}

/// Whether a COPY went through; false if it met a chunk that exists (a unique violation).
fn copied_or_exists(copied: std::result::Result<u64, sqlx::Error>) -> Result<bool> {
    match copied {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `COPY … FROM STDIN (FORMAT binary)` into `sample_chunk`, the columns in the order `CopyBuffer` writes.
const COPY_SAMPLE_CHUNK: &str = "copy sample_chunk (series_id, chunk_start, n_samples, last_ts, data) from stdin (format binary)";

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01), for binary COPY timestamps.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Chunk rows in Postgres' binary COPY format.
struct CopyBuffer {
    buf: Vec<u8>,
    rows: u64,
    /// Samples in the rows written by `run`.
    samples: u64,
}

impl CopyBuffer {
    /// A row's bytes besides its data: the field count and five lengths, four fixed-size fields.
    const ROW_BYTES: usize = 2 + 5 * 4 + 8 + 8 + 4 + 8;

    /// Room for `bytes` of rows, so a window's rows are not copied as the buffer grows.
    fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(19 + bytes + 2);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self {
            buf,
            rows: 0,
            samples: 0,
        }
    }

    /// A row with its data already encoded.
    fn row(&mut self, r: &ChunkRow) {
        self.fixed_fields(r.series_id, r.chunk_start, r.n_samples, r.last_ts);
        self.buf
            .extend_from_slice(&(r.data.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(&r.data);
    }

    /// A row of `chunk`, encoded in place.
    fn chunk(&mut self, series_id: i64, chunk_start: i64, chunk: &Chunk) {
        let last_ts = *chunk.ts.last().unwrap_or(&chunk_start);
        self.fixed_fields(series_id, chunk_start, chunk.len() as i32, last_ts);
        self.data(|buf| chunk.encode_into(buf));
    }

    /// A row of the chunk `run` (sorted, unique, in one chunk, not empty) makes, encoded in place.
    fn run(&mut self, series_id: i64, run: Run<'_>) {
        let Some((first, last)) = run.ends() else {
            return;
        };
        self.fixed_fields(series_id, chunk_start(first), run.len() as i32, last);
        self.data(|buf| Chunk::encode_run_into(run, buf));
        self.samples += run.len() as u64;
    }

    /// The data field, written by `encode` after its length (filled in once known).
    fn data(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        encode(&mut self.buf);
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn fixed_fields(&mut self, series_id: i64, chunk_start: i64, n_samples: i32, last_ts: i64) {
        self.buf.extend_from_slice(&5i16.to_be_bytes());
        for field in [
            &series_id.to_be_bytes()[..],
            &(chunk_start * 1_000_000 - PG_EPOCH_MICROS).to_be_bytes()[..],
            &n_samples.to_be_bytes()[..],
            &(last_ts * 1_000_000 - PG_EPOCH_MICROS).to_be_bytes()[..],
        ] {
            self.buf
                .extend_from_slice(&(field.len() as i32).to_be_bytes());
            self.buf.extend_from_slice(field);
        }
        self.rows += 1;
    }

    /// How much is sent to Postgres at a time.
    const PIECE: usize = 1 << 20;

    /// Sends the rows encoded so far, a piece at a time (sent as one, they would be copied whole into the
    /// connection's buffer, fresh memory for every window), and empties the buffer for the next ones.
    async fn send_piece<C: DerefMut<Target = PgConnection>>(
        &mut self,
        copy: &mut PgCopyIn<C>,
    ) -> std::result::Result<(), sqlx::Error> {
        for piece in self.buf.chunks(Self::PIECE) {
            copy.send(piece).await?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Ends the rows and sends what is left.
    async fn send_end<C: DerefMut<Target = PgConnection>>(
        &mut self,
        copy: &mut PgCopyIn<C>,
    ) -> std::result::Result<(), sqlx::Error> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.send_piece(copy).await
    }
}

impl Store {
    /// Every stored chunk row (benchmarks only: it reads the whole table).
    pub async fn export_chunk_rows(&self) -> Result<Vec<ChunkRow>> {
        let rows: Vec<(i64, i64, i32, i64, Vec<u8>)> = sqlx::query_as(
            "select series_id, extract(epoch from chunk_start)::bigint, n_samples,
                    extract(epoch from last_ts)::bigint, data
             from sample_chunk order by chunk_start, series_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ChunkRow {
                series_id: r.0,
                chunk_start: r.1,
                n_samples: r.2,
                last_ts: r.3,
                data: r.4,
            })
            .collect())
    }

    /// Empties `sample_chunk` (every partition, keeping the partitions) and the scrape marks: the state
    /// before a first scrape, for the benchmark's repeated measurements.
    pub async fn truncate_samples(&self) -> Result<()> {
        sqlx::query("truncate sample_chunk, scrape_mark")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The raw ingest ceiling: `COPY sample_chunk FROM STDIN (FORMAT binary)` of ready rows, with no merge.
    /// Returns the rows copied. Partitions must exist (they do after a scrape of the same window).
    pub async fn copy_chunk_rows_raw(&self, rows: &[ChunkRow]) -> Result<u64> {
        use sqlx::postgres::PgPoolCopyExt;
        let mut buf = CopyBuffer::with_capacity(
            rows.iter()
                .map(|r| CopyBuffer::ROW_BYTES + r.data.len())
                .sum(),
        );
        for r in rows {
            buf.row(r);
        }
        let mut copy = self.pool.copy_in_raw(COPY_SAMPLE_CHUNK).await?;
        buf.send_end(&mut copy).await?;
        Ok(copy.finish().await?)
    }

    /// Bytes at rest of every `sample_chunk` partition (heap, indexes, TOAST) and the samples they hold.
    pub async fn sample_storage(&self) -> Result<StorageSize> {
        let (bytes, partitions): (i64, i64) = sqlx::query_as(
            "select coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint, count(*)
             from pg_inherits i where i.inhparent = 'sample_chunk'::regclass",
        )
        .fetch_one(&self.pool)
        .await?;
        let (samples, rows): (i64, i64) = sqlx::query_as(
            "select coalesce(sum(n_samples), 0)::bigint, count(*) from sample_chunk",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StorageSize {
            bytes,
            samples,
            rows,
            partitions,
        })
    }
}

impl Store {
    /// Creates an empty database on this server (benchmarks use a scratch database they drop afterwards).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let sql = format!("create database \"{}\"", name.replace('"', ""));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drops a database of this server, disconnecting its sessions.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let sql = format!(
            "drop database if exists \"{}\" with (force)",
            name.replace('"', "")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
