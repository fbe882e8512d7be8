//! What every chart shares: a linear scale from data to pixels, "nice"
//! tick values (1, 2 or 5 times a power of ten) and short tick labels.

/// Maps `[d0, d1]` onto `[r0, r1]` (pixels; `r1 < r0` for a y axis).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    /// A scale over the values' range, widened a little (and made non-empty)
    /// so no line lies on a border.
    pub fn fit(values: impl Iterator<Item = f64>, r0: f64, r1: f64) -> Scale {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = if hi > lo {
            (hi - lo) * 0.04
        } else {
            lo.abs().max(1.0) * 0.5
        };
        Scale {
            d0: lo - pad,
            d1: hi + pad,
            r0,
            r1,
        }
    }

    pub fn at(&self, v: f64) -> f64 {
        let t = if self.d1 > self.d0 {
            (v - self.d0) / (self.d1 - self.d0)
        } else {
            0.5
        };
        self.r0 + t * (self.r1 - self.r0)
    }

    /// About `count` nice ticks inside the domain.
    pub fn ticks(&self, count: usize) -> Vec<f64> {
        let span = self.d1 - self.d0;
        if span <= 0.0 || !span.is_finite() {
            return vec![self.d0];
        }
        let raw = span / count.max(1) as f64;
        let power = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * power)
            .find(|s| span / s <= count as f64)
            .unwrap_or(10.0 * power);
        let first = (self.d0 / step).ceil() as i64;
        let last = (self.d1 / step).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }
}

/// A tick label: no more digits than the step needs (1.5, 200, 12k, 0.002).
pub fn label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 10_000.0 {
        format!("{}k", trim(v / 1000.0, 1))
    } else if a >= 1.0 {
        trim(v, 2)
    } else {
        let digits = (-a.log10()).ceil() as usize + 1;
        trim(v, digits.min(8))
    }
}

fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let s = Scale {
            d0: 0.0,
            d1: 800.0,
            r0: 0.0,
            r1: 100.0,
        };
        assert_eq!(s.ticks(5), [0.0, 200.0, 400.0, 600.0, 800.0]);
        let s = Scale {
            d0: 2.93,
            d1: 7.1,
            ..s
        };
        assert_eq!(s.ticks(5), [3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(s.at(2.93), 0.0);
        assert_eq!(label(0.002), "0.002");
        assert_eq!(label(12_000.0), "12k");
        assert_eq!(label(3.5), "3.5");
    }
}
