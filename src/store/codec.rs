//! The compact encoding of a chunk of samples, pure and independent of the database.
//!
//! Layout (all integers LEB128 varints, signed ones zig-zag coded):
//! `version=1, n, columns, first_ts, (step, repeat)*, then columns × n little-endian f32`.
//! Timestamps are stored as runs of equal steps, so a regular series costs a few bytes of timestamps per
//! chunk; values are 32-bit floats (7 significant digits, far finer than any capacity decision needs).
//! See docs/storage.md for the measured bytes per sample.

use super::points::Run;

/// Why stored bytes could not be decoded: they were written by another version or damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("chunk truncated at byte {at}")]
    Truncated { at: usize },
    #[error("unknown chunk version {0}")]
    Version(u8),
    #[error("chunk is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Decoded chunk: strictly increasing timestamps (Unix seconds) and one or more value columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    pub ts: Vec<i64>,
    pub columns: Vec<Vec<f32>>,
}

const VERSION: u8 = 1;

impl Chunk {
    /// A one-column chunk from `(timestamp, value)` pairs that are already sorted and unique.
    pub fn from_points(points: &[(i64, f64)]) -> Self {
        Self::from_run(Run::Pairs(points))
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The first column as `(timestamp, value)` pairs.
    pub fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.ts
            .iter()
            .zip(&self.columns[0])
            .map(|(&t, &v)| (t, v as f64))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// About the size of the encoding (exact for evenly spaced timestamps).
    pub fn encoded_len_hint(&self) -> usize {
        encoded_len_hint(self.ts.len(), self.columns.len())
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let cols = &self.columns;
        encode_with(
            out,
            self.ts.len(),
            cols.len(),
            Times::Each(&|i| self.ts[i]),
            |c, i| cols[c][i],
        );
    }

    /// A one-column chunk of one run's samples.
    pub fn from_run(run: Run<'_>) -> Self {
        Chunk {
            ts: run.points().map(|p| p.0).collect(),
            columns: vec![run.points().map(|p| p.1 as f32).collect()],
        }
    }

    /// Appends the encoding of `Chunk::from_run(run)` to `out`, without building the chunk. A gapless
    /// stretch of a grid is one run of timestamps, written without comparing them.
    pub fn encode_run_into(run: Run<'_>, out: &mut Vec<u8>) {
        match run {
            Run::Pairs(p) => encode_with(out, p.len(), 1, Times::Each(&|i| p[i].0), |_, i| {
                p[i].1 as f32
            }),
            Run::Dense { t0, step, values } => {
                encode_with(out, values.len(), 1, Times::Even { t0, step }, |_, i| {
                    values[i] as f32
                })
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte()?;
        if version != VERSION {
            return Err(CodecError::Version(version));
        }
        let n = r.u64()? as usize;
        let cols = r.u64()? as usize;
        // A damaged length must not make us allocate gigabytes: the values alone need 4 bytes each, and
        // even an empty chunk holds no more columns than it has bytes.
        if n.saturating_mul(cols).saturating_mul(4) > bytes.len()
            || cols == 0 && n > 0
            || cols > bytes.len()
        {
            return Err(CodecError::Inconsistent("length exceeds the data"));
        }
        let mut ts = Vec::with_capacity(n);
        if n > 0 {
            let mut t = r.i64()?;
            ts.push(t);
            while ts.len() < n {
                let step = r.i64()?;
                let run = r.u64()? as usize;
                if step <= 0 || run == 0 || run > n - ts.len() {
                    return Err(CodecError::Inconsistent("bad timestamp run"));
                }
                for _ in 0..run {
                    t = t
                        .checked_add(step)
                        .ok_or(CodecError::Inconsistent("timestamp out of range"))?;
                    ts.push(t);
                }
            }
        }
        let mut columns = Vec::with_capacity(cols);
        for _ in 0..cols {
            let raw = r.take(n * 4)?;
            columns.push(
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            );
        }
        if r.at != bytes.len() {
            return Err(CodecError::Inconsistent("trailing bytes"));
        }
        Ok(Chunk { ts, columns })
    }

    /// Merges `newer` into `self` by timestamp; where both hold a timestamp, `newer` wins. Returns whether
    /// anything changed, so that writing the same samples twice writes nothing.
    pub fn merge(&mut self, newer: &Chunk) -> bool {
        assert_eq!(
            self.columns.len(),
            newer.columns.len(),
            "merging chunks of different widths"
        );
        let cols = self.columns.len();
        let (mut i, mut j) = (0, 0);
        let mut ts = Vec::with_capacity(self.ts.len() + newer.ts.len());
        let mut columns: Vec<Vec<f32>> = vec![Vec::with_capacity(ts.capacity()); cols];
        let mut changed = false;
        while i < self.ts.len() || j < newer.ts.len() {
            let take_old = j >= newer.ts.len() || (i < self.ts.len() && self.ts[i] < newer.ts[j]);
            if take_old {
                ts.push(self.ts[i]);
                for (out, col) in columns.iter_mut().zip(&self.columns) {
                    out.push(col[i]);
                }
                i += 1;
            } else {
                let same_ts = i < self.ts.len() && self.ts[i] == newer.ts[j];
                ts.push(newer.ts[j]);
                for (c, out) in columns.iter_mut().enumerate() {
                    let v = newer.columns[c][j];
                    if !same_ts || self.columns[c][i].to_bits() != v.to_bits() {
                        changed = true;
                    }
                    out.push(v);
                }
                if same_ts {
                    i += 1;
                }
                j += 1;
            }
        }
        self.ts = ts;
        self.columns = columns;
        changed
    }
}

/// About the size of the encoding of `n` samples in `cols` columns: exact for evenly spaced timestamps,
/// whose header (version, counts, first timestamp, one run) takes at most 33 bytes.
pub fn encoded_len_hint(n: usize, cols: usize) -> usize {
    33 + n * 4 * cols
}

/// The timestamps of a chunk being encoded: any (sorted, unique), or evenly spaced.
enum Times<'a> {
    Each(&'a dyn Fn(usize) -> i64),
    Even { t0: i64, step: i64 },
}

/// The encoding of `n` timestamps (sorted, unique) and `cols` columns of values `value(c, i)`: the
/// version, the counts, the first timestamp and runs of equal steps, then each column's values.
fn encode_with(
    out: &mut Vec<u8>,
    n: usize,
    cols: usize,
    ts: Times<'_>,
    value: impl Fn(usize, usize) -> f32,
) {
    out.push(VERSION);
    put_u64(out, n as u64);
    put_u64(out, cols as u64);
    if n > 0 {
        match ts {
            Times::Even { t0, step } => {
                put_i64(out, t0);
                if n > 1 {
                    put_i64(out, step);
                    put_u64(out, n as u64 - 1);
                }
            }
            Times::Each(ts) => {
                put_i64(out, ts(0));
                let mut i = 1;
                while i < n {
                    let step = ts(i) - ts(i - 1);
                    let mut run = 1;
                    while i + run < n && ts(i + run) - ts(i + run - 1) == step {
                        run += 1;
                    }
                    put_i64(out, step);
                    put_u64(out, run as u64);
                    i += run;
                }
            }
        }
    }
    // The values in place: one bounds check per column rather than a capacity check per value.
    let at = out.len();
    out.resize(at + n * cols * 4, 0);
    for (c, column) in out[at..].chunks_exact_mut(n.max(1) * 4).enumerate() {
        for (i, bytes) in column.chunks_exact_mut(4).enumerate() {
            bytes.copy_from_slice(&value(c, i).to_le_bytes());
        }
    }
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(CodecError::Truncated { at: self.at })?;
        self.at += 1;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Inconsistent("varint too long"))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        let u = self.u64()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn take(&mut self, len: usize) -> Result<&[u8], CodecError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(CodecError::Truncated { at: self.at })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
}

/// One stored chunk row as it sits in `sample_chunk`, for measurements that copy rows around.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    pub series_id: i64,
    pub chunk_start: i64,
    pub n_samples: i32,
    pub last_ts: i64,
    pub data: Vec<u8>,
}

/// The size at rest of the raw sample store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StorageSize {
    /// Heap, indexes and TOAST of every `sample_chunk` partition.
    pub bytes: i64,
    pub samples: i64,
    pub rows: i64,
    pub partitions: i64,
}

impl StorageSize {
    pub fn bytes_per_sample(&self) -> f64 {
        self.bytes as f64 / self.samples.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regular_series_costs_a_few_bytes_of_timestamps() {
        let points: Vec<(i64, f64)> = (0..360)
            .map(|i| (1_700_000_000 + i * 60, i as f64))
            .collect();
        let bytes = Chunk::from_points(&points).encode();
        assert!(bytes.len() <= 360 * 4 + 16, "{} bytes", bytes.len());
        assert_eq!(
            Chunk::decode(&bytes).unwrap().points().collect::<Vec<_>>(),
            points
        );
    }

    #[test]
    fn points_encode_as_the_chunk_built_from_them_does() {
        let irregular = [(0, 1.5), (60, -2.0), (120, 3.25), (300, 0.0), (301, 1e9)];
        let regular: Vec<(i64, f64)> = (0..100).map(|i| (i * 15, i as f64 / 7.0)).collect();
        for points in [&[][..], &irregular[..], &regular[..]] {
            let mut direct = Vec::new();
            Chunk::encode_run_into(Run::Pairs(points), &mut direct);
            assert_eq!(direct, Chunk::from_points(points).encode());
        }
        // A gapless stretch of a grid encodes as its pairs do, one value or many.
        for values in [&[2.5][..], &[1.0, -3.0, 1e12, 0.1][..]] {
            let dense = Run::Dense {
                t0: 1_700_000_100,
                step: 300,
                values,
            };
            let pairs: Vec<(i64, f64)> = dense.points().collect();
            let mut direct = Vec::new();
            Chunk::encode_run_into(dense, &mut direct);
            assert_eq!(direct, Chunk::from_points(&pairs).encode());
            assert_eq!(Chunk::from_run(dense), Chunk::from_points(&pairs));
        }
    }

    #[test]
    fn merging_the_same_samples_changes_nothing() {
        let points: Vec<(i64, f64)> = (0..10).map(|i| (i * 60, i as f64 * 1.5)).collect();
        let mut chunk = Chunk::from_points(&points);
        let before = chunk.encode();
        assert!(!chunk.merge(&Chunk::from_points(&points[3..7])));
        assert_eq!(chunk.encode(), before);
    }

    #[test]
    fn merging_interleaves_and_newer_values_win() {
        let mut a = Chunk::from_points(&[(0, 1.0), (120, 3.0)]);
        assert!(a.merge(&Chunk::from_points(&[(60, 2.0), (120, 4.0), (180, 5.0)])));
        assert_eq!(
            a.points().collect::<Vec<_>>(),
            vec![(0, 1.0), (60, 2.0), (120, 4.0), (180, 5.0)]
        );
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let bytes = Chunk::from_points(&[(0, 1.0), (60, 2.0)]).encode();
        for cut in 0..bytes.len() {
            assert!(Chunk::decode(&bytes[..cut]).is_err());
        }
        assert_eq!(Chunk::decode(&[9]), Err(CodecError::Version(9)));
        assert!(Chunk::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]).is_err());
        // No samples but 2^40 columns: refused before anything is allocated for them (the allocation
        // failure aborted the process).
        let mut huge = vec![VERSION];
        put_u64(&mut huge, 0);
        put_u64(&mut huge, 1 << 40);
        assert!(Chunk::decode(&huge).is_err());
        // A timestamp run that overflows i64.
        let mut overflow = vec![VERSION];
        put_u64(&mut overflow, 2);
        put_u64(&mut overflow, 1);
        put_i64(&mut overflow, i64::MAX - 1);
        put_i64(&mut overflow, 60);
        put_u64(&mut overflow, 1);
        overflow.extend([0; 8]);
        assert!(Chunk::decode(&overflow).is_err());
    }

    proptest! {
        #[test]
        fn any_sorted_series_round_trips(mut ts in proptest::collection::btree_set(-1_000_000i64..10_000_000, 0..300),
                                        seed in any::<u32>()) {
            let points: Vec<(i64, f64)> = std::mem::take(&mut ts)
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t, ((i as u32).wrapping_mul(seed) % 10_000) as f64 / 7.0))
                .collect();
            let chunk = Chunk::from_points(&points);
            let back = Chunk::decode(&chunk.encode()).unwrap();
            prop_assert_eq!(back, chunk);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Chunk::decode(&bytes);
        }
    }
}
