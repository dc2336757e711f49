//! Conformal intervals from backtest residuals: residuals pooled by lead time, a stretch learnt by
//! leaving one backtest origin out (so errors that vary from day to day widen the interval), and a
//! growth exponent, measured on the backtest, that carries the spread beyond the backtested leads.

/// Backtest residuals (actual minus point forecast) grouped by lead time, sorted within each bucket,
/// with the calibration learnt from the backtest itself.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bands {
    buckets: Vec<Vec<f64>>,
    /// Median residual of each bucket: the centre the stretch widens from.
    centre: Vec<f64>,
    /// Lead times covered by the backtest; beyond it the spread grows as `(lead / backtested)^growth`.
    backtested: usize,
    /// Factor on the distance of each residual from its bucket's median (1: plain split conformal).
    stretch: f64,
    growth: f64,
}

/// A stretch larger than this means the backtest origins disagree wildly; more would only hide it.
const MAX_STRETCH: f64 = 4.0;
/// Never narrower than half the plain conformal width: a few calm origins do not prove a calm future.
const MIN_STRETCH: f64 = 0.5;

impl Bands {
    /// Pools `by_origin[k][lead]` (`NaN` where nothing was observed) into lead buckets of about 60
    /// residuals or more, then learns the stretch that makes each origin's residuals fall inside the
    /// `level` interval built from the other origins at least a `level` share of the time.
    pub(super) fn calibrated(by_origin: &[Vec<f64>], level: f64) -> Self {
        let mut b = Self::pooled(by_origin.iter());
        if b.buckets.is_empty() {
            return b;
        }
        b.growth = b.measured_growth();
        if by_origin.len() < 2 {
            return b;
        }
        let (lo_q, hi_q) = ((1.0 - level) / 2.0, (1.0 + level) / 2.0);
        let mut need: Vec<f64> = Vec::new();
        for k in 0..by_origin.len() {
            let rest = Self::pooled(
                by_origin
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .map(|(_, r)| r),
            );
            if rest.buckets.is_empty() {
                continue;
            }
            for (lead, &r) in by_origin[k].iter().enumerate() {
                if !r.is_finite() {
                    continue;
                }
                let c = rest.centre_at(lead);
                let half = if r >= c {
                    rest.raw_quantile(lead, hi_q) - c
                } else {
                    c - rest.raw_quantile(lead, lo_q)
                };
                let d = (r - c).abs();
                need.push(if d == 0.0 {
                    0.0
                } else if half > 0.0 {
                    d / half
                } else {
                    MAX_STRETCH
                });
            }
        }
        if need.is_empty() {
            return b;
        }
        // Finite-sample conformal quantile: the ceil((m + 1) level)-th smallest requirement.
        need.sort_by(f64::total_cmp);
        let m = need.len();
        let k = (((m + 1) as f64 * level).ceil() as usize).clamp(1, m);
        b.stretch = need[k - 1].clamp(MIN_STRETCH, MAX_STRETCH);
        b
    }

    fn pooled<'a>(by_origin: impl Iterator<Item = &'a Vec<f64>> + Clone) -> Self {
        let bt = by_origin.clone().map(Vec::len).max().unwrap_or(0).max(1);
        let total: usize = by_origin
            .clone()
            .map(|r| r.iter().filter(|v| v.is_finite()).count())
            .sum();
        let nb = (total / 60).clamp(1, 24).min(bt);
        let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); nb];
        for r in by_origin {
            for (h, v) in r.iter().enumerate() {
                if v.is_finite() {
                    buckets[h * nb / bt].push(*v);
                }
            }
        }
        buckets.retain(|b| !b.is_empty());
        for b in &mut buckets {
            b.sort_by(f64::total_cmp);
        }
        let centre = buckets.iter().map(|b| b[b.len() / 2]).collect();
        Self {
            buckets,
            centre,
            backtested: bt,
            stretch: 1.0,
            growth: 0.5,
        }
    }

    fn bucket(&self, lead: usize) -> usize {
        let nb = self.buckets.len();
        (lead.min(self.backtested - 1) * nb / self.backtested).min(nb - 1)
    }

    fn centre_at(&self, lead: usize) -> f64 {
        self.centre[self.bucket(lead)]
    }

    /// Split-conformal quantile of the pooled residuals, without stretch or growth.
    fn raw_quantile(&self, lead: usize, q: f64) -> f64 {
        let r = &self.buckets[self.bucket(lead)];
        let m = r.len();
        let k = if q >= 0.5 {
            ((m + 1) as f64 * q).ceil() as usize
        } else {
            ((m + 1) as f64 * q).floor() as usize
        };
        r[k.clamp(1, m) - 1]
    }

    /// How the spread grows with the lead inside the backtest: the mean distance from the median in
    /// the last quarter of the leads against the first quarter, as an exponent of the lead ratio,
    /// kept between a random walk's 1/2 and a mis-estimated slope's 1.
    fn measured_growth(&self) -> f64 {
        let nb = self.buckets.len();
        if nb < 4 {
            return 0.5;
        }
        let spread = |i: usize| {
            let c = self.centre[i];
            self.buckets[i].iter().map(|r| (r - c).abs()).sum::<f64>()
                / self.buckets[i].len() as f64
        };
        let q = nb / 4;
        let early: f64 = (0..q).map(spread).sum::<f64>() / q as f64;
        let late: f64 = (nb - q..nb).map(spread).sum::<f64>() / q as f64;
        // Bucket midpoints of the first and last quarters are about (nb - q / 2) / (q / 2) apart.
        let ratio = (2 * nb - q) as f64 / q as f64;
        if early > 0.0 && late > 0.0 {
            ((late / early).ln() / ratio.ln()).clamp(0.5, 1.0)
        } else {
            0.5
        }
    }

    /// Maps a pooled residual at `lead` to the calibrated one: stretched from the bucket's median,
    /// and grown beyond the backtested leads.
    fn map(&self, lead: usize, r: f64) -> f64 {
        let c = self.centre_at(lead);
        let v = c + self.stretch * (r - c);
        if lead < self.backtested {
            v
        } else {
            v * ((lead + 1) as f64 / self.backtested as f64).powf(self.growth)
        }
    }

    /// The calibrated `q` quantile of the residual at `lead` (0 without any residual).
    pub(super) fn quantile(&self, lead: usize, q: f64) -> f64 {
        if self.buckets.is_empty() {
            return 0.0;
        }
        self.map(lead, self.raw_quantile(lead, q))
    }

    /// Share of calibrated residuals at `lead` at or above `need`; `surely` short-cuts a trivial
    /// threshold.
    pub(super) fn tail(&self, lead: usize, need: f64, surely: bool) -> f64 {
        if surely {
            return 1.0;
        }
        if self.buckets.is_empty() {
            return if need <= 0.0 { 1.0 } else { 0.0 };
        }
        let res = &self.buckets[self.bucket(lead)];
        // `map` is increasing in `r`: the stretch and growth factors are positive.
        let above = res.len() - res.partition_point(|&r| self.map(lead, r) < need);
        above as f64 / (res.len() + 1) as f64
    }

    #[cfg(test)]
    pub(super) fn stretch(&self) -> f64 {
        self.stretch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(k: usize, amp: f64, len: usize) -> Vec<f64> {
        (0..len)
            .map(|h| amp * (((h * 7 + k * 13) % 17) as f64 / 8.0 - 1.0))
            .collect()
    }

    #[test]
    fn origins_that_agree_keep_the_plain_conformal_width() {
        let by_origin: Vec<Vec<f64>> = (0..6).map(|k| wave(k, 1.0, 120)).collect();
        let b = Bands::calibrated(&by_origin, 0.8);
        assert!((0.8..=1.3).contains(&b.stretch()), "{}", b.stretch());
    }

    #[test]
    fn origins_whose_errors_differ_in_size_widen_the_interval() {
        let by_origin: Vec<Vec<f64>> = (0..6)
            .map(|k| wave(k, if k % 2 == 0 { 1.0 } else { 4.0 }, 120))
            .collect();
        let b = Bands::calibrated(&by_origin, 0.8);
        assert!(b.stretch() > 1.1, "{}", b.stretch());
        let plain = Bands::pooled(by_origin.iter());
        assert!(b.quantile(3, 0.9) > plain.raw_quantile(3, 0.9));
    }

    #[test]
    fn spread_growing_in_proportion_to_the_lead_grows_linearly_beyond_the_backtest() {
        let by_origin: Vec<Vec<f64>> = (0..6)
            .map(|k| {
                wave(k, 1.0, 240)
                    .into_iter()
                    .enumerate()
                    .map(|(h, v)| v * (h + 1) as f64)
                    .collect()
            })
            .collect();
        let b = Bands::pooled(by_origin.iter());
        assert!(b.measured_growth() > 0.9, "{}", b.measured_growth());
        let flat: Vec<Vec<f64>> = (0..6).map(|k| wave(k, 1.0, 240)).collect();
        assert_eq!(Bands::pooled(flat.iter()).measured_growth(), 0.5);
    }

    #[test]
    fn tail_and_quantile_agree() {
        let by_origin: Vec<Vec<f64>> = (0..5).map(|k| wave(k, 2.0, 100)).collect();
        let b = Bands::calibrated(&by_origin, 0.8);
        for lead in [0, 50, 99, 300] {
            let q = b.quantile(lead, 0.9);
            let p = b.tail(lead, q, false);
            assert!((0.05..=0.2).contains(&p), "lead {lead}: {p}");
            assert!(b.tail(lead, q + 1e-9, false) < p + 1e-12);
        }
    }
}
