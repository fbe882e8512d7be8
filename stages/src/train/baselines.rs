//! Unigram and bigram baselines with add-k smoothing, fitted on the training
//! split and scored on the same validation targets as the model. A model
//! that does not beat them has not learned.

use std::collections::HashMap;

use super::score::Score;

/// The smoothing constant: small, since the vocabulary is large next to
/// the counts of rare successors.
pub const ADD_K: f64 = 0.1;

pub struct Ngram {
    vocab: usize,
    unigram: Vec<u64>,
    total: u64,
    /// Successor counts per previous id.
    bigram: HashMap<u32, HashMap<u32, u64>>,
    /// Ids by falling unigram count (ties by id): top-k predictions.
    by_count: Vec<u32>,
    /// The position of each id in `by_count`.
    unigram_rank: Vec<usize>,
}

impl Ngram {
    /// Counts over every song of the training split (bigrams within songs).
    pub fn fit(train: &crate::dataset::Split, vocab: usize) -> Ngram {
        let mut unigram = vec![0u64; vocab];
        let mut bigram: HashMap<u32, HashMap<u32, u64>> = HashMap::new();
        for s in 0..train.songs() {
            let song = train.song(s);
            for &id in song {
                unigram[id as usize] += 1;
            }
            for w in song.windows(2) {
                *bigram.entry(w[0]).or_default().entry(w[1]).or_default() += 1;
            }
        }
        let mut by_count: Vec<u32> = (0..vocab as u32).collect();
        by_count.sort_by_key(|&id| (std::cmp::Reverse(unigram[id as usize]), id));
        let mut unigram_rank = vec![0; vocab];
        for (rank, &id) in by_count.iter().enumerate() {
            unigram_rank[id as usize] = rank;
        }
        Ngram {
            unigram_rank,
            total: unigram.iter().sum(),
            vocab,
            unigram,
            bigram,
            by_count,
        }
    }

    /// Scores each `targets[i]` (the unigram ignores `prev`, the bigram
    /// conditions on `prevs[i]`).
    pub fn score(&self, prevs: &[u32], targets: &[u32], is_note: &[bool]) -> (Score, Score) {
        let (mut uni, mut bi) = (Score::default(), Score::default());
        let v = self.vocab as f64;
        for (&prev, &t) in prevs.iter().zip(targets) {
            let note = is_note[t as usize];
            let p_uni = (self.unigram[t as usize] as f64 + ADD_K) / (self.total as f64 + ADD_K * v);
            uni.add(-p_uni.ln(), self.unigram_rank[t as usize], note);

            let successors = self.bigram.get(&prev);
            let count = |id: u32| successors.and_then(|s| s.get(&id)).copied().unwrap_or(0);
            let row_total: u64 = successors.map_or(0, |s| s.values().sum());
            let p_bi = (count(t) as f64 + ADD_K) / (row_total as f64 + ADD_K * v);
            bi.add(-p_bi.ln(), self.bigram_rank(successors, t), note);
        }
        (uni, bi)
    }

    /// The rank of `t` among the bigram's predictions: successors by falling
    /// count (ties by id), then the unseen ones in unigram order.
    fn bigram_rank(&self, successors: Option<&HashMap<u32, u64>>, t: u32) -> usize {
        let Some(s) = successors else {
            return self.unigram_rank[t as usize];
        };
        match s.get(&t) {
            Some(&c) => s
                .iter()
                .filter(|&(&id, &n)| n > c || (n == c && id < t))
                .count(),
            None => {
                let unseen_before = self
                    .by_count
                    .iter()
                    .take_while(|&&id| id != t)
                    .filter(|id| !s.contains_key(id))
                    .count();
                s.len() + unseen_before
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Split;

    #[test]
    fn bigram_beats_unigram_on_a_deterministic_pattern() {
        let mut train = Split::new();
        train.push_song(&[2, 3, 4, 2, 3, 4, 2, 3, 4, 5]);
        let model = Ngram::fit(&train, 6);
        let val = [2u32, 3, 4, 2, 3];
        let notes = vec![false; 6];
        let (uni, bi) = model.score(&val[..4], &val[1..], &notes);
        let (u, b) = (uni.summary(), bi.summary());
        assert!(b.loss < u.loss, "{b:?} vs {u:?}");
        assert_eq!(b.accuracy, 1.0);
        assert_eq!(bi.tokens, 4);
        // Unigram probabilities are the smoothed counts.
        let p3 = (3.0 + ADD_K) / (10.0 + 6.0 * ADD_K);
        let (one, _) = model.score(&[2], &[3], &notes);
        assert!((one.nll_sum + p3.ln()).abs() < 1e-12);
    }

    #[test]
    fn ranks_unseen_successors_after_seen_ones() {
        let mut train = Split::new();
        train.push_song(&[1, 2, 1, 2, 1, 3, 4, 4, 4]);
        let model = Ngram::fit(&train, 5);
        let s = model.bigram.get(&1);
        assert_eq!(model.bigram_rank(s, 2), 0);
        assert_eq!(model.bigram_rank(s, 3), 1);
        // Unseen successors follow in unigram order: 1 (3 counts), 4 (3), 0.
        assert_eq!(model.bigram_rank(s, 1), 2);
        assert_eq!(model.bigram_rank(s, 4), 3);
        assert_eq!(model.bigram_rank(s, 0), 4);
    }
}
