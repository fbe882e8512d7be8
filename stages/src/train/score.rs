//! Scores of a next-token predictor on the validation split: loss in nats
//! and bits, top-1 / top-5 accuracy and bits per note. The model and the
//! baselines fill the same struct, so they are compared on equal terms.

use serde::Serialize;

/// Running totals over scored targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub nll_sum: f64,
    pub top1: u64,
    pub top5: u64,
    pub tokens: u64,
    /// Targets that are note starts.
    pub notes: u64,
}

/// The finished numbers (keys as in metrics.json, prefixed there).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub loss: f64,
    pub bits_per_token: f64,
    pub accuracy: f64,
    pub top5_accuracy: f64,
    pub bits_per_note: f64,
}

impl Score {
    /// Adds one target: its negative log-probability and its rank among all
    /// tokens (0 = the most likely).
    pub fn add(&mut self, nll: f64, rank: usize, is_note: bool) {
        self.nll_sum += nll;
        self.tokens += 1;
        self.top1 += (rank == 0) as u64;
        self.top5 += (rank < 5) as u64;
        self.notes += is_note as u64;
    }

    pub fn summary(&self) -> Summary {
        let n = self.tokens.max(1) as f64;
        let bits = self.nll_sum / std::f64::consts::LN_2;
        Summary {
            loss: self.nll_sum / n,
            bits_per_token: bits / n,
            accuracy: self.top1 as f64 / n,
            top5_accuracy: self.top5 as f64 / n,
            // Total bits over all tokens, per note: comparable across
            // vocabularies that spend different numbers of tokens per note.
            bits_per_note: if self.notes == 0 {
                f64::NAN
            } else {
                bits / self.notes as f64
            },
        }
    }
}

/// True for a note-start token `i{program}:v{velocity}:{pitch}`.
pub fn is_note_start(token: &str) -> bool {
    let mut parts = token.split(':');
    let (Some(i), Some(v), Some(p), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    i.len() > 1
        && i.starts_with('i')
        && v.strip_prefix('v')
            .is_some_and(|v| v.parse::<u32>().is_ok())
        && p.parse::<u32>().is_ok()
}

/// `is_note_start` per id of a vocabulary.
pub fn note_mask(tokens: &[String]) -> Vec<bool> {
    tokens.iter().map(|t| is_note_start(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_starts_are_recognised() {
        assert!(is_note_start("i80:v100:64"));
        assert!(is_note_start("i128:v90:36"));
        assert!(!is_note_start("end:i80:v100:64"));
        assert!(!is_note_start("wait:8"));
        assert!(!is_note_start("tempo:150"));
        assert!(!is_note_start("start"));
        assert!(!is_note_start("i80:x100:64"));
    }

    #[test]
    fn summary_divides_correctly() {
        let mut s = Score::default();
        s.add(std::f64::consts::LN_2, 0, true);
        s.add(3.0 * std::f64::consts::LN_2, 7, false);
        let sum = s.summary();
        assert!((sum.bits_per_token - 2.0).abs() < 1e-12);
        assert!((sum.bits_per_note - 4.0).abs() < 1e-12);
        assert_eq!(sum.accuracy, 0.5);
        assert_eq!(sum.top5_accuracy, 0.5);
    }
}
