//! Latency samples and their summaries.

use serde_json::{Value, json};

/// Durations of one kind of operation, ms.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Add one duration, ms.
    pub fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    /// How many were taken.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were taken.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p` quantile (0 to 1) by the nearest-rank method, ms; 0 when empty.
    pub fn quantile(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = (p * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// The median, ms.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// The 99th percentile, ms.
    pub fn p99(&self) -> f64 {
        self.quantile(0.99)
    }

    /// `{"n", "medianMs", "p99Ms", "minMs", "maxMs"}`.
    pub fn json(&self) -> Value {
        json!({
            "n": self.len(),
            "medianMs": round3(self.median()),
            "p99Ms": round3(self.p99()),
            "minMs": round3(self.quantile(0.0)),
            "maxMs": round3(self.quantile(1.0)),
        })
    }

    /// `median X ms, p99 Y ms (n N)`.
    pub fn text(&self) -> String {
        format!(
            "median {:.3} ms, p99 {:.3} ms (n {})",
            self.median(),
            self.p99(),
            self.len()
        )
    }
}

/// The median of the element-wise ratios `a[i] / b[i]` (runs paired in time); 0 when empty.
pub fn paired_ratio(a: &Samples, b: &Samples) -> f64 {
    let ratios = Samples(
        a.0.iter()
            .zip(&b.0)
            .filter(|(_, y)| **y > 0.0)
            .map(|(x, y)| x / y)
            .collect(),
    );
    ratios.median()
}

/// `x` rounded to 3 decimals (for JSON).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let s = Samples((1..=100).map(f64::from).collect());
        assert_eq!(s.median(), 50.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert_eq!(s.quantile(1.0), 100.0);
        assert_eq!(Samples::default().median(), 0.0);
        let a = Samples(vec![2.0, 3.0, 8.0]);
        let b = Samples(vec![1.0, 2.0, 2.0]);
        assert_eq!(paired_ratio(&a, &b), 2.0);
    }
}
