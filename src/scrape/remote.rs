//! Prometheus' remote-read protocol (`POST /api/v1/read`), pure: the request (protobuf, snappy-compressed
//! block format), the streamed answer (`STREAMED_XOR_CHUNKS`: frames of a varint length, a big-endian
//! CRC-32C and one `ChunkedReadResponse`) and the Gorilla XOR chunks the samples come in. The source sends
//! raw samples as they sit in its blocks, with no PromQL evaluation and no JSON; `eval` does the rest.

use std::ops::Range;

use prost::Message;

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ResponseType`: 0 samples, 1 streamed XOR chunks.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.Query`: series matching every matcher, samples between the two times (milliseconds).
#[derive(Clone, PartialEq, Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelMatcher {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// How a matcher compares, with `prometheus.LabelMatcher.Type`'s numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Equal = 0,
    NotEqual = 1,
    Regex = 2,
}

impl LabelMatcher {
    pub fn new(kind: Match, name: &str, value: &str) -> Self {
        Self {
            r#type: kind as i32,
            name: name.to_string(),
            value: value.to_string(),
        }
    }
}

/// `prometheus.ChunkedReadResponse`: some series of the query `query_index` of the request.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ChunkedSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// Name and value stay in the answer's buffer (`bytes` has the wire format of `string`): a series' labels
/// cost no allocation, and are checked to be UTF-8 once the series is whole.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(bytes = "bytes", tag = "1")]
    pub name: bytes::Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: bytes::Bytes,
}

/// One chunk as the source stores it; `kind` 1 is XOR (float samples).
#[derive(Clone, PartialEq, Message)]
pub struct Chunk {
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: bytes::Bytes,
}

const XOR: i32 = 1;
const STREAMED_XOR_CHUNKS: i32 = 1;

/// The content type of a streamed answer; anything else means the source cannot stream chunks.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf";

/// The request body: the protobuf of `queries`, asking for streamed chunks only, snappy-compressed.
pub fn encode_request(queries: Vec<Query>) -> Vec<u8> {
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![STREAMED_XOR_CHUNKS],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any buffer")
}

/// The query a request body asks for (for tests and tools that inspect recorded requests).
pub fn decode_request(body: &[u8]) -> Result<ReadRequest, WireError> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WireError(format!("request is not snappy: {e}")))?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| WireError(format!("request: {e}")))
}

/// A malformed answer: names what was wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("remote-read answer: {0}")]
pub struct WireError(pub String);

/// Receives the series of a streamed answer one at a time, each whole: merged across the frames it was split
/// over, its labels sorted by name, its float samples (milliseconds, value) in time order with one per
/// time, stale markers kept (they end a series for the instant selector). Neither slice outlives the call:
/// a window's raw samples are never all held at once.
pub trait SeriesSink {
    fn series(&mut self, query: usize, labels: &[(&str, &str)], samples: &[(i64, f64)]);
    /// How many values the sink holds so far (what a window's memory grows with).
    fn held(&self) -> u64;
}

/// The value of the label `name` in labels sorted by name, or "" (how PromQL sees a missing label).
pub fn label<'a>(labels: &[(&str, &'a str)], name: &str) -> &'a str {
    labels
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .map_or("", |i| labels[i].1)
}

/// The series of one query being read: frames may split a series, so it is handed on when the next one
/// begins or the answer ends. The buffers are reused from series to series.
#[derive(Default)]
struct Pending {
    /// The message the series began in; its labels are ranges of it, sorted by name.
    message: bytes::Bytes,
    labels: Vec<(Range<usize>, Range<usize>)>,
    samples: Vec<(i64, f64)>,
    open: bool,
    /// The frame the series began in.
    frame: usize,
}

impl Pending {
    fn flush(&mut self, query: usize, sink: &mut impl SeriesSink) -> Result<(), WireError> {
        if !std::mem::take(&mut self.open) {
            return Ok(());
        }
        let samples = &mut self.samples;
        // Chunks of overlapping blocks may repeat samples; keep one per time.
        if samples.windows(2).any(|w| w[0].0 >= w[1].0) {
            samples.sort_by_key(|p| p.0);
            samples.dedup_by_key(|p| p.0);
        }
        let (message, frame) = (&self.message, self.frame);
        let text = |r: &Range<usize>| {
            std::str::from_utf8(&message[r.clone()])
                .map_err(|_| WireError(format!("frame {frame}: a label is not UTF-8")))
        };
        let labels = self
            .labels
            .iter()
            .map(|(n, v)| Ok((text(n)?, text(v)?)))
            .collect::<Result<Vec<_>, WireError>>()?;
        sink.series(query, &labels, samples);
        Ok(())
    }
}

/// Reads the protobuf fields of one message, borrowing from its bytes: the answer's messages are read in
/// place, with no allocation per series, label or chunk (the generated decoder makes a vector of each).
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

/// A field's value: a varint (wire type 0) or the range of a length-delimited one (type 2) in the
/// message. Fixed-size fields (types 1 and 5) are skipped: the answer has none.
enum Value {
    Varint(u64),
    Bytes(Range<usize>),
    Fixed,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, String> {
        match varint_prefix(&self.buf[self.at..]) {
            Ok(Some((v, n))) => {
                self.at += n;
                Ok(v)
            }
            Ok(None) => Err("message ends inside a varint".into()),
            Err(()) => Err("varint too long".into()),
        }
    }

    /// The next field's number and value, or None at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value)>, String> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            2 => {
                let len = self.varint()?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| self.at.checked_add(l))
                    .filter(|&e| e <= self.buf.len())
                    .ok_or_else(|| format!("field {} runs past its message", key >> 3))?;
                let r = self.at..end;
                self.at = end;
                Value::Bytes(r)
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if self.at + n > self.buf.len() {
                    return Err(format!("field {} runs past its message", key >> 3));
                }
                self.at += n;
                Value::Fixed
            }
            t => return Err(format!("field {} has wire type {t}", key >> 3)),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// The protobuf varint at the start of `buf`, and how many bytes it takes; `Ok(None)` if `buf` ends inside
/// it, `Err` if it runs past the 10 bytes a varint has at most.
#[inline(always)]
fn varint_prefix(buf: &[u8]) -> Result<Option<(u64, usize)>, ()> {
    // Field keys, lengths of labels and most times' bytes: one byte.
    if let Some(&b) = buf.first()
        && b < 0x80
    {
        return Ok(Some((u64::from(b), 1)));
    }
    let mut v = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some((v, i + 1)));
        }
    }
    if buf.len() >= 10 { Err(()) } else { Ok(None) }
}

/// Shifts a range of a nested message to the message it sits in.
fn within(outer: &Range<usize>, inner: Range<usize>) -> Range<usize> {
    outer.start + inner.start..outer.start + inner.end
}

/// Decodes a whole streamed answer to the `ranges.len()` queries of its request, handing each series to
/// `sink` with the samples in `[min_ms, max_ms]` of its query (chunks come whole, so they reach past the
/// range asked for). On an error the sink has seen part of the answer: the caller drops what it gathered.
pub fn decode_stream(
    body: &bytes::Bytes,
    ranges: &[(i64, i64)],
    sink: &mut impl SeriesSink,
) -> Result<(), WireError> {
    let mut decoder = StreamDecoder::new(ranges);
    decoder.feed(body.clone(), sink)?;
    decoder.finish(sink)
}

/// A frame longer than this is taken for a garbled length prefix: Prometheus cuts frames at about 1 MB
/// (`--storage.remote.read-max-bytes-in-frame`), and a single series' chunks never come near this.
const MAX_FRAME_BYTES: u64 = 1 << 28;

/// Decodes a streamed answer piece by piece, as the body arrives: whole frames are decoded from the piece
/// they sit in (labels and chunks stay in its buffer), and a frame split over pieces is carried over and
/// decoded once complete. So the answer is never held whole, and decoding runs while the source is
/// still sending.
pub struct StreamDecoder<'r> {
    ranges: &'r [(i64, i64)],
    pending: Vec<Pending>,
    /// The start of a frame whose end has not arrived yet.
    carry: bytes::BytesMut,
    /// Frames decoded so far (to name the one that went wrong).
    frame: usize,
    /// The labels of the series being read (name and value ranges of its message).
    labels: Vec<(Range<usize>, Range<usize>)>,
}

/// Where the message of a frame starting at `buf[0]` begins and where the frame ends (after its length
/// prefix and CRC); `Ok(None)` while the length prefix is incomplete.
fn frame_bounds(buf: &[u8], frame: usize) -> Result<Option<(usize, usize)>, WireError> {
    match varint_prefix(buf) {
        Ok(Some((len, _))) if len > MAX_FRAME_BYTES => Err(WireError(format!(
            "frame {frame}: length {len} is not believable (bad length prefix)"
        ))),
        Ok(Some((len, n))) => {
            let data = n + 4;
            Ok(Some((data, data + len as usize)))
        }
        Ok(None) => Ok(None),
        Err(()) => Err(WireError(format!("frame {frame}: bad length prefix"))),
    }
}

impl<'r> StreamDecoder<'r> {
    pub fn new(ranges: &'r [(i64, i64)]) -> Self {
        Self {
            ranges,
            pending: (0..ranges.len()).map(|_| Pending::default()).collect(),
            carry: bytes::BytesMut::new(),
            frame: 0,
            labels: Vec::new(),
        }
    }

    /// Decodes the frames that `piece`, the next part of the body, completes.
    pub fn feed(
        &mut self,
        mut piece: bytes::Bytes,
        sink: &mut impl SeriesSink,
    ) -> Result<(), WireError> {
        use bytes::Buf;
        // First finish the frame carried over, taking from the piece only what it lacks (its length
        // prefix may itself be split: then a byte at a time).
        while !self.carry.is_empty() {
            let (need, completes) = match frame_bounds(&self.carry, self.frame)? {
                Some((_, end)) => (end - self.carry.len(), true),
                None => (1, false),
            };
            let take = need.min(piece.len());
            self.carry.extend_from_slice(&piece[..take]);
            piece.advance(take);
            if take < need {
                return Ok(());
            }
            if completes {
                let whole = self.carry.split().freeze();
                self.frames(&whole, sink)?;
            }
        }
        let used = self.frames(&piece, sink)?;
        self.carry.extend_from_slice(&piece[used..]);
        Ok(())
    }

    /// Hands on the series still open once the body has ended; an unfinished frame means the body was
    /// cut short.
    pub fn finish(mut self, sink: &mut impl SeriesSink) -> Result<(), WireError> {
        if !self.carry.is_empty() {
            return Err(WireError(format!(
                "frame {}: cut short (truncated body)",
                self.frame
            )));
        }
        for (q, p) in self.pending.iter_mut().enumerate() {
            p.flush(q, sink)?;
        }
        Ok(())
    }

    /// Decodes the whole frames at the start of `buf`; returns how many bytes they took.
    fn frames(
        &mut self,
        buf: &bytes::Bytes,
        sink: &mut impl SeriesSink,
    ) -> Result<usize, WireError> {
        let mut at = 0;
        while let Some((data, end)) = frame_bounds(&buf[at..], self.frame)? {
            let (data, end) = (at + data, at + end);
            if end > buf.len() {
                break;
            }
            let crc = u32::from_be_bytes(buf[data - 4..data].try_into().expect("4 bytes"));
            // CRC-32C in hardware where the CPU has it: a table is several times slower per byte.
            if crc32c::crc32c(&buf[data..end]) != crc {
                return Err(WireError(format!(
                    "frame {}: checksum mismatch",
                    self.frame
                )));
            }
            // Labels and chunk data stay in the piece's buffer: no copy per label or chunk.
            self.message(buf.slice(data..end), sink)?;
            at = end;
            self.frame += 1;
        }
        Ok(at)
    }

    /// One frame's `ChunkedReadResponse`: its series' samples join the series they continue or start
    /// a new one (handing on the one before).
    fn message(&mut self, data: bytes::Bytes, sink: &mut impl SeriesSink) -> Result<(), WireError> {
        let frame = self.frame;
        let bad = |e: String| WireError(format!("frame {frame}: {e}"));
        // The query index may come after the series.
        let mut query_index = 0i64;
        let mut fields = Fields::new(&data);
        while let Some((field, value)) = fields.next_field().map_err(bad)? {
            if let (2, Value::Varint(v)) = (field, value) {
                query_index = v as i64;
            }
        }
        let q = usize::try_from(query_index)
            .ok()
            .filter(|&q| q < self.ranges.len())
            .ok_or_else(|| bad(format!("query index {query_index} out of range")))?;
        let range = self.ranges[q];
        let mut fields = Fields::new(&data);
        while let Some((field, value)) = fields.next_field().map_err(bad)? {
            if let (1, Value::Bytes(series)) = (field, value) {
                self.series(q, range, &data, series, sink)?;
            }
        }
        Ok(())
    }

    /// One `ChunkedSeries` of query `q`, at `series` in `data`.
    fn series(
        &mut self,
        q: usize,
        (min_ms, max_ms): (i64, i64),
        data: &bytes::Bytes,
        series: Range<usize>,
        sink: &mut impl SeriesSink,
    ) -> Result<(), WireError> {
        let frame = self.frame;
        let bad = |e: String| WireError(format!("frame {frame}: {e}"));
        let labels = &mut self.labels;
        labels.clear();
        let mut fields = Fields::new(&data[series.clone()]);
        while let Some((field, value)) = fields.next_field().map_err(bad)? {
            let (1, Value::Bytes(label)) = (field, value) else {
                continue;
            };
            let label = within(&series, label);
            let (mut name, mut value) = (label.start..label.start, label.start..label.start);
            let mut parts = Fields::new(&data[label.clone()]);
            while let Some((part, v)) = parts.next_field().map_err(bad)? {
                match (part, v) {
                    (1, Value::Bytes(r)) => name = within(&label, r),
                    (2, Value::Bytes(r)) => value = within(&label, r),
                    _ => {}
                }
            }
            labels.push((name, value));
        }
        if !labels.is_sorted_by(|a, b| data[a.0.clone()] <= data[b.0.clone()]) {
            labels.sort_unstable_by(|a, b| data[a.0.clone()].cmp(&data[b.0.clone()]));
        }
        let p = &mut self.pending[q];
        // A series split over frames continues the one before it.
        let same = p.open
            && p.labels.len() == labels.len()
            && p.labels.iter().zip(labels.iter()).all(|(a, b)| {
                p.message[a.0.clone()] == data[b.0.clone()]
                    && p.message[a.1.clone()] == data[b.1.clone()]
            });
        if !same {
            p.flush(q, sink)?;
            p.message = data.clone();
            std::mem::swap(&mut p.labels, labels);
            p.samples.clear();
            p.open = true;
            p.frame = frame;
        }
        let mut fields = Fields::new(&data[series.clone()]);
        while let Some((field, value)) = fields.next_field().map_err(bad)? {
            let (2, Value::Bytes(chunk)) = (field, value) else {
                continue;
            };
            let chunk = &data[within(&series, chunk)];
            let (mut lo, mut hi, mut kind, mut bits) = (0i64, 0i64, 0i64, &chunk[..0]);
            let mut parts = Fields::new(chunk);
            while let Some((part, v)) = parts.next_field().map_err(bad)? {
                match (part, v) {
                    (1, Value::Varint(v)) => lo = v as i64,
                    (2, Value::Varint(v)) => hi = v as i64,
                    (3, Value::Varint(v)) => kind = v as i64,
                    (4, Value::Bytes(r)) => bits = &chunk[r],
                    _ => {}
                }
            }
            if hi < min_ms || lo > max_ms {
                continue;
            }
            if kind != i64::from(XOR) {
                return Err(bad(format!(
                    "chunk encoding {kind} is not XOR (native histograms are not read)"
                )));
            }
            decode_xor(bits, min_ms, max_ms, &mut p.samples).map_err(bad)?;
        }
        Ok(())
    }
}

/// Why a chunk did not decode. A small value rather than a message, so that the hot path returns in
/// registers; `decode_xor` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// The bits ran out inside a sample.
    Short,
    VarintTooLong,
    ValueHeader,
}

impl Bad {
    fn message(self) -> &'static str {
        match self {
            Bad::Short => "chunk ends mid-sample",
            Bad::VarintTooLong => "varint too long",
            Bad::ValueHeader => "bad XOR value header",
        }
    }
}

/// Bits read most significant first, as Prometheus' `bstream` writes them: `at(bit)` gives the 57 or
/// more bits from `bit` on, left-aligned in a `u64` (one load, one byte swap, one shift), zeros past the
/// end. A sample's time and the header of its value fit in one such window, its value's bits in one more
/// (two for a value of more than 57 significant bits); the position is checked against the length once
/// per sample.
struct Bits<'a> {
    data: &'a [u8],
    len: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            len: data.len() * 8,
        }
    }

    #[inline(always)]
    fn at(&self, bit: usize) -> u64 {
        let byte = bit / 8;
        let word = match self.data.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap_or_default()),
            None => {
                let mut tail = [0u8; 8];
                let rest = self.data.get(byte..).unwrap_or_default();
                tail[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(tail)
            }
        };
        word << (bit % 8)
    }

    /// The `n` bits from `bit` on (`n` from 1 to 64), right-aligned.
    #[inline(always)]
    fn bits(&self, bit: usize, n: u32) -> u64 {
        if n <= 57 {
            return top(self.at(bit), n);
        }
        top((self.at(bit) >> 32 << 32) | (self.at(bit + 32) >> 32), n)
    }

    /// `Short` unless the bits up to `bit` are all in the data.
    #[inline(always)]
    fn within(&self, bit: usize) -> Result<(), Bad> {
        if bit > self.len {
            return Err(Bad::Short);
        }
        Ok(())
    }

    /// An unsigned varint at `bit` (on a byte boundary: a chunk's two varints follow its start and a
    /// 64-bit value), and the bit after it.
    fn uvarint(&self, bit: usize) -> Result<(u64, usize), Bad> {
        debug_assert!(bit.is_multiple_of(8));
        match varint_prefix(self.data.get(bit / 8..).unwrap_or_default()) {
            Ok(Some((v, n))) => Ok((v, bit + 8 * n)),
            Ok(None) => Err(Bad::Short),
            Err(()) => Err(Bad::VarintTooLong),
        }
    }
}

/// The top `n` bits of `w`, `n` from 1 to 64.
#[inline(always)]
fn top(w: u64, n: u32) -> u64 {
    w >> (64 - n)
}

/// Decodes a Prometheus XOR chunk (Gorilla encoding: delta-of-delta timestamps, XOR'd values), appending
/// the samples with `min_ms <= t <= max_ms`.
pub fn decode_xor(
    chunk: &[u8],
    min_ms: i64,
    max_ms: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), String> {
    if chunk.len() < 2 {
        return Err("chunk shorter than its header".into());
    }
    let n = u16::from_be_bytes([chunk[0], chunk[1]]) as usize;
    decode_samples(&chunk[2..], n, (min_ms, max_ms), out).map_err(|e| e.message().to_string())
}

fn decode_samples(
    data: &[u8],
    n: usize,
    (min_ms, max_ms): (i64, i64),
    out: &mut Vec<(i64, f64)>,
) -> Result<(), Bad> {
    if n == 0 {
        return Ok(());
    }
    out.reserve(n);
    let r = Bits::new(data);
    // The first sample: a varint time and 64 bits of value.
    let (zz, mut bit) = r.uvarint(0)?;
    let mut t = (zz >> 1) as i64 ^ -((zz & 1) as i64);
    r.within(bit + 64)?;
    let mut val = r.bits(bit, 64);
    bit += 64;
    // Keeps a sample in the range; false once past it (the rest of the chunk is later still).
    let emit = |out: &mut Vec<(i64, f64)>, t: i64, v: u64| {
        if t > max_ms {
            return false;
        }
        if t >= min_ms {
            out.push((t, f64::from_bits(v)));
        }
        true
    };
    if !emit(out, t, val) || n == 1 {
        return Ok(());
    }
    // The second: a varint delta, then a value as every later one.
    let (d, at) = r.uvarint(bit)?;
    let mut delta = d as i64;
    bit = at;
    let (mut leading, mut trailing) = (0u32, 0u32);
    bit += value(&r, bit, &mut val, &mut leading, &mut trailing)?;
    r.within(bit)?;
    t += delta;
    if !emit(out, t, val) {
        return Ok(());
    }
    let mut i = 2;
    while i < n {
        let w = r.at(bit);
        // A run of samples one delta apart with the value unchanged (a request, a limit, a counter
        // at rest: most of what a cluster exports) is two zero bits each, taken many at once (up to
        // 28: the window's real bits).
        let zeros = (w.leading_zeros().min(56) / 2) as usize;
        if zeros > 0 {
            let run = zeros.min(n - i);
            bit += 2 * run;
            r.within(bit)?;
            i += run;
            let last = t + delta * run as i64;
            if t + delta >= min_ms && last <= max_ms {
                // The whole run is in the range (most runs): appended at once.
                let (t0, v) = (t, f64::from_bits(val));
                out.extend((1..=run as i64).map(|k| (t0 + delta * k, v)));
                t = last;
                continue;
            }
            for _ in 0..run {
                t += delta;
                if !emit(out, t, val) {
                    return Ok(());
                }
            }
            continue;
        }
        // The delta of deltas: 0, or a prefix of 1 to 4 ones and 14, 17, 20 or 64 bits.
        let (dod, used) = match w.leading_ones().min(4) {
            0 => (0, 1),
            4 => (r.bits(bit + 4, 64) as i64, 4 + 64),
            ones => {
                let size = [14, 17, 20][ones as usize - 1];
                let bits = top(w << (ones + 1), size);
                let dod = if bits > 1 << (size - 1) {
                    bits as i64 - (1i64 << size)
                } else {
                    bits as i64
                };
                (dod, ones as usize + 1 + size as usize)
            }
        };
        bit += used;
        bit += value(&r, bit, &mut val, &mut leading, &mut trailing)?;
        r.within(bit)?;
        delta += dod;
        t += delta;
        if !emit(out, t, val) {
            break;
        }
        i += 1;
    }
    Ok(())
}

/// Applies the XOR'd value at `bit` to `val`; returns how many bits it took.
#[inline(always)]
fn value(
    r: &Bits,
    bit: usize,
    val: &mut u64,
    leading: &mut u32,
    trailing: &mut u32,
) -> Result<usize, Bad> {
    let w = r.at(bit);
    match top(w, 2) {
        0 | 1 => Ok(1),
        2 => {
            // The last value's window: its significant bits after the two control bits.
            let significant = 64 - *leading - *trailing;
            let x = if significant <= 55 {
                top(w << 2, significant)
            } else {
                r.bits(bit + 2, significant)
            };
            *val ^= x << *trailing;
            Ok(2 + significant as usize)
        }
        _ => {
            // A new window: 5 bits of leading zeros, 6 of significant bits (0 for 64), then those.
            *leading = top(w << 2, 5) as u32;
            let significant = match top(w << 7, 6) as u32 {
                0 => 64,
                s => s,
            };
            *trailing = (64 - *leading)
                .checked_sub(significant)
                .ok_or(Bad::ValueHeader)?;
            let x = if significant <= 44 {
                top(w << 13, significant)
            } else {
                r.bits(bit + 13, significant)
            };
            *val ^= x << *trailing;
            Ok(13 + significant as usize)
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::{Just, Strategy};

    /// Writes bits most significant first (the mirror of `Bits`), for building chunks in tests.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn write(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if v >> i & 1 == 1 {
                    *self.bytes.last_mut().unwrap() |= 1 << (7 - self.bits % 8);
                }
                self.bits += 1;
            }
        }
        fn uvarint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.write((v as u8 | 0x80) as u64, 8);
                v >>= 7;
            }
            self.write(v, 8);
        }
    }

    /// Prometheus' XOR encoding (tsdb/chunkenc/xor.go), written from its description, for round trips.
    pub fn encode_xor(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut w = BitWriter::default();
        let (mut t, mut delta, mut val) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (0xffu32, 0u32);
        for (i, &(ts, v)) in samples.iter().enumerate() {
            let bits = v.to_bits();
            match i {
                0 => {
                    let zz = ((ts << 1) ^ (ts >> 63)) as u64;
                    w.uvarint(zz);
                    w.write(bits, 64);
                }
                _ => {
                    let d = ts - t;
                    if i == 1 {
                        w.uvarint(d as u64);
                    } else {
                        let dod = d - delta;
                        let fits = |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1 << (n - 1);
                        match dod {
                            0 => w.write(0, 1),
                            _ if fits(14) => {
                                w.write(0b10, 2);
                                w.write(dod as u64 & ((1 << 14) - 1), 14)
                            }
                            _ if fits(17) => {
                                w.write(0b110, 3);
                                w.write(dod as u64 & ((1 << 17) - 1), 17)
                            }
                            _ if fits(20) => {
                                w.write(0b1110, 4);
                                w.write(dod as u64 & ((1 << 20) - 1), 20)
                            }
                            _ => {
                                w.write(0b1111, 4);
                                w.write(dod as u64, 64)
                            }
                        }
                    }
                    delta = d;
                    let x = bits ^ val;
                    if x == 0 {
                        w.write(0, 1);
                    } else {
                        w.write(1, 1);
                        let (l, tr) = (x.leading_zeros().min(31), x.trailing_zeros());
                        if leading != 0xff && l >= leading && tr >= trailing {
                            w.write(0, 1);
                            w.write(x >> trailing, 64 - leading - trailing);
                        } else {
                            (leading, trailing) = (l, tr);
                            w.write(1, 1);
                            w.write(l as u64, 5);
                            let sig = 64 - l - tr;
                            w.write(sig as u64 & 63, 6);
                            w.write(x >> tr, sig);
                        }
                    }
                }
            }
            t = ts;
            val = bits;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend(w.bytes);
        out
    }

    /// One streamed frame holding `msg`.
    pub fn frame(msg: &ChunkedReadResponse) -> Vec<u8> {
        let data = msg.encode_to_vec();
        let mut out = Vec::new();
        prost::encoding::encode_varint(data.len() as u64, &mut out);
        out.extend(crc32c::crc32c(&data).to_be_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn xor_chunks_round_trip_timestamps_jitter_and_values_of_every_kind() {
        let mut samples = Vec::new();
        let mut t = 1_700_000_000_123i64;
        for i in 0..120 {
            // Scrape jitter, gaps (deltas of deltas of every size: 14, 17, 20 and 64 bits), an exact
            // repeat, tiny and huge values.
            t += match i {
                20 => 40_000,
                30 => 300_000,
                50 => 3_600_000,
                51 => 15_000,
                90 => 1_000_000_000,
                _ => 15_000 + (i % 7) * 13 - 40,
            };
            let v = match i % 5 {
                0 => 1.5e9 + i as f64,
                1 => 0.001 * i as f64,
                2 => -3.25,
                3 => 1.5e9 + i as f64,
                _ => f64::from_bits(0x7ff0_0000_0000_0002), // a stale marker
            };
            samples.push((t, v));
        }
        let chunk = encode_xor(&samples);
        let mut got = Vec::new();
        decode_xor(&chunk, i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(got.len(), samples.len());
        for (a, b) in got.iter().zip(&samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
        // The range keeps only what was asked for.
        let mut part = Vec::new();
        decode_xor(&chunk, samples[10].0, samples[20].0, &mut part).unwrap();
        let bits = |s: &[(i64, f64)]| s.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&part), bits(&samples[10..=20]));
        // Cut short: an error, not a panic or invented samples.
        let mut cut = Vec::new();
        let err = decode_xor(&chunk[..chunk.len() / 2], i64::MIN, i64::MAX, &mut cut).unwrap_err();
        assert!(err.contains("ends mid-sample"), "{err}");
    }

    proptest::proptest! {
        /// Any times and any values (every width of XOR'd bits, up to all 64: the two reads of a wide
        /// value), in runs that repeat, come back to the bit.
        #[test]
        fn xor_chunks_round_trip_any_times_and_values(
            gaps in proptest::collection::vec(
                proptest::prop_oneof![Just(15_000i64), 1i64..20_000, 1i64..2_000_000, 1i64..(1i64 << 40)],
                1..120,
            ),
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u64::ANY,
                    (0u64..1024).prop_map(|v| (v as f64).to_bits()),
                    (0u32..64, proptest::num::u64::ANY).prop_map(|(s, v)| v >> s << (s / 2)),
                ],
                120,
            ),
            repeats in proptest::collection::vec(0usize..4, 120),
        ) {
            let mut t = -1_000_000i64;
            let mut samples: Vec<(i64, f64)> = Vec::new();
            for (i, gap) in gaps.iter().enumerate() {
                t += gap;
                let v = match samples.last() {
                    Some(last) if repeats[i] > 0 => last.1,
                    _ => f64::from_bits(values[i]),
                };
                samples.push((t, v));
            }
            let chunk = encode_xor(&samples);
            let mut got = Vec::new();
            decode_xor(&chunk, i64::MIN, i64::MAX, &mut got).unwrap();
            let bits = |s: &[(i64, f64)]| s.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&got), bits(&samples));
        }
    }

    #[test]
    fn runs_of_unchanged_samples_decode_whole_and_cut_to_the_range() {
        // Runs of 1 to 40 samples at a steady interval with one value, between changes of value or
        // interval: the zero bits of a run may end anywhere in a byte, and the chunk's padding after
        // the last one must not read as more samples.
        let bits = |s: &[(i64, f64)]| s.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>();
        for first in [1usize, 2, 3, 7, 29, 40] {
            let mut samples = Vec::new();
            let (mut t, mut run, mut len) = (1_000_000i64, 0usize, first);
            for i in 0..120 {
                if run == len {
                    (run, len) = (0, len % 40 + 1);
                    t += 7; // the interval changes too
                }
                t += 30_000;
                samples.push((t, (i - run) as f64));
                run += 1;
            }
            let chunk = encode_xor(&samples);
            let mut got = Vec::new();
            decode_xor(&chunk, i64::MIN, i64::MAX, &mut got).unwrap();
            assert_eq!(bits(&got), bits(&samples), "runs starting at {first}");
            for (lo, hi) in [(5, 6), (10, 50), (33, 119), (0, 0)] {
                let mut part = Vec::new();
                decode_xor(&chunk, samples[lo].0, samples[hi].0, &mut part).unwrap();
                assert_eq!(bits(&part), bits(&samples[lo..=hi]), "{lo}..={hi}");
            }
            let mut cut = Vec::new();
            assert!(decode_xor(&chunk[..chunk.len() - 2], i64::MIN, i64::MAX, &mut cut).is_err());
        }
    }

    #[test]
    fn streams_are_split_by_query_checked_and_merged_across_frames() {
        let series = |pod: &str, samples: &[(i64, f64)]| ChunkedSeries {
            labels: vec![
                Label {
                    name: "pod".into(),
                    value: bytes::Bytes::copy_from_slice(pod.as_bytes()),
                },
                Label {
                    name: "__name__".into(),
                    value: "m".into(),
                },
            ],
            chunks: vec![Chunk {
                min_time_ms: samples[0].0,
                max_time_ms: samples.last().unwrap().0,
                r#type: XOR,
                data: encode_xor(samples).into(),
            }],
        };
        let mut body = frame(&ChunkedReadResponse {
            chunked_series: vec![series("a", &[(1_000, 1.0), (2_000, 2.0)])],
            query_index: 0,
        });
        body.extend(frame(&ChunkedReadResponse {
            chunked_series: vec![series("a", &[(3_000, 3.0), (4_000, 4.0)])],
            query_index: 0,
        }));
        body.extend(frame(&ChunkedReadResponse {
            chunked_series: vec![series("b", &[(1_000, 7.0)])],
            query_index: 1,
        }));
        let body = bytes::Bytes::from(body);
        let decode = |body: &bytes::Bytes, ranges: &[(i64, i64)]| {
            let mut got = Collected::default();
            decode_stream(body, ranges, &mut got).map(|()| got.0)
        };
        let got = decode(&body, &[(0, 3_000), (0, 10_000)]).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        let (q, labels, samples) = &got[0];
        assert_eq!(*q, 0);
        assert_eq!(
            labels,
            &[("__name__".into(), "m".into()), ("pod".into(), "a".into())],
            "labels sorted by name"
        );
        assert_eq!(samples, &[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]);
        // The body as it arrives: in pieces of any size, frames and length prefixes split anywhere.
        for size in 1..=body.len() {
            let mut pieces = Collected::default();
            let ranges = [(0, 3_000), (0, 10_000)];
            let mut decoder = StreamDecoder::new(&ranges);
            for piece in body.chunks(size) {
                decoder.feed(body.slice_ref(piece), &mut pieces).unwrap();
            }
            decoder.finish(&mut pieces).unwrap();
            assert_eq!(pieces.0, got, "pieces of {size} bytes");
        }
        assert_eq!(
            got[1],
            (
                1,
                vec![("__name__".into(), "m".into()), ("pod".into(), "b".into())],
                vec![(1_000, 7.0)]
            )
        );

        let mut bad = body.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = decode(&bad.into(), &[(0, 3_000), (0, 10_000)]).unwrap_err();
        assert!(e.0.contains("frame 2: checksum"), "{e}");
        let e = decode(&body.slice(..body.len() - 3), &[(0, 3_000), (0, 10_000)]).unwrap_err();
        assert!(e.0.contains("cut short"), "{e}");
        let e = decode(&bytes::Bytes::from_static(&[0xff; 12]), &[(0, 1)]).unwrap_err();
        assert!(e.0.contains("frame 0: bad length prefix"), "{e}");
        let e = decode(
            &bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            &[(0, 1)],
        )
        .unwrap_err();
        assert!(e.0.contains("is not believable"), "{e}");
        // A frame whose checksum holds but whose message does not parse.
        let mut garbled = Vec::new();
        let data = [0x0a, 0x05, 0x0a];
        prost::encoding::encode_varint(data.len() as u64, &mut garbled);
        garbled.extend(crc32c::crc32c(&data).to_be_bytes());
        garbled.extend(data);
        let e = decode(&garbled.into(), &[(0, 1)]).unwrap_err();
        assert!(
            e.0.contains("frame 0: field 1 runs past its message"),
            "{e}"
        );
        let e = decode(&body, &[(0, 3_000)]).unwrap_err();
        assert!(e.0.contains("query index 1 out of range"), "{e}");
        let mut latin1 = series("a", &[(1_000, 1.0)]);
        latin1.labels[0].value = bytes::Bytes::from_static(b"caf\xe9");
        let odd = frame(&ChunkedReadResponse {
            chunked_series: vec![latin1],
            query_index: 0,
        });
        let e = decode(&odd.into(), &[(0, 3_000)]).unwrap_err();
        assert!(e.0.contains("frame 0: a label is not UTF-8"), "{e}");
    }

    /// A series as the sink saw it: its query, labels and samples.
    type Seen = (usize, Vec<(String, String)>, Vec<(i64, f64)>);

    /// Every series an answer holds.
    #[derive(Default)]
    struct Collected(Vec<Seen>);

    impl SeriesSink for Collected {
        fn series(&mut self, query: usize, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
            let labels = labels.iter().map(|(n, v)| (n.to_string(), v.to_string()));
            self.0.push((query, labels.collect(), samples.to_vec()));
        }
        fn held(&self) -> u64 {
            self.0.iter().map(|s| s.2.len() as u64).sum()
        }
    }

    #[test]
    fn requests_round_trip_through_snappy() {
        let q = Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![LabelMatcher::new(Match::Regex, "resource", "cpu|memory")],
        };
        let req = decode_request(&encode_request(vec![q.clone()])).unwrap();
        assert_eq!(req.queries, vec![q]);
        assert_eq!(req.accepted_response_types, vec![STREAMED_XOR_CHUNKS]);
    }
}
