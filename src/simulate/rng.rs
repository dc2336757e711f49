//! A tiny deterministic random source (splitmix64): the simulator needs reproducible streams, not
//! cryptographic quality, and a hand-written generator keeps a dependency out of the build.

/// One splitmix64 step: a bijective mix of 64 bits. Also used as a hash of a counter.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of two words; the noise of a series at a step is `hash2(series key, step)`, so any sample can
/// be recomputed on its own without replaying a stream.
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    mix(a ^ mix(b))
}

/// A uniform number in [0, 1) from 53 bits of a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A roughly standard-normal number (sum of four uniforms, rescaled) from one hash: bounded to about
/// ±3.5, which keeps simulated usage from producing absurd outliers.
pub(crate) fn gauss(h: u64) -> f64 {
    let s: f64 = (0..4u64).map(|i| unit(mix(h.wrapping_add(i)))).sum();
    (s - 2.0) * 3f64.sqrt()
}

/// A sequential stream for planning the cluster (names, sizes, event times).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: mix(seed) }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * unit(self.next_u64())
    }

    /// Uniform integer in [0, n); `n` must be positive.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` characters from Kubernetes' name-suffix alphabet (no vowels, no look-alike digits).
    pub(crate) fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    /// A version-4-shaped UUID, as pod uids are.
    pub(crate) fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_does_not() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_and_gaussian_draws_have_the_expected_moments() {
        let n = 20_000u64;
        let u: Vec<f64> = (0..n).map(|i| unit(hash2(3, i))).collect();
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let g: Vec<f64> = (0..n).map(|i| gauss(hash2(4, i))).collect();
        let gm = g.iter().sum::<f64>() / n as f64;
        let var = g.iter().map(|x| (x - gm).powi(2)).sum::<f64>() / n as f64;
        assert!(gm.abs() < 0.03, "gaussian mean {gm}");
        assert!((var - 1.0).abs() < 0.05, "gaussian variance {var}");
    }

    #[test]
    fn suffixes_and_uuids_have_kubernetes_shapes() {
        let mut r = Rng::new(1);
        let s = r.suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let u = r.uuid();
        let parts: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
    }
}
