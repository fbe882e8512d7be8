//! Sorting by u64 keys in linear passes (the reader's sorts by tick, the song set's table).

const DIGIT_BITS: usize = 11;
const BUCKETS: usize = 1 << DIGIT_BITS;

/// Sorts items by a u64 key: an LSD radix sort, 11 bits per pass; stable
/// (items of equal keys keep their order). The counts of every digit come
/// from one read, only as many digits as the largest key has are looked
/// at, and digits all keys share are skipped (a few linear passes instead
/// of n log n comparisons).
pub fn radix_sort_by_key<T: Copy + Default>(items: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if items.len() < 64 || items.len() >= u32::MAX as usize {
        items.sort_by_key(|x| key(x));
        return;
    }
    let max = items.iter().map(&key).max().unwrap_or(0);
    let digits = (64 - max.leading_zeros() as usize).div_ceil(DIGIT_BITS);
    if digits == 0 {
        return;
    }
    let mask = (BUCKETS - 1) as u64;
    let mut counts = vec![[0u32; BUCKETS]; digits];
    for x in items.iter() {
        let k = key(x);
        for (digit, c) in counts.iter_mut().enumerate() {
            c[((k >> (digit * DIGIT_BITS)) & mask) as usize] += 1;
        }
    }
    let mut buffer = vec![T::default(); items.len()];
    for (digit, c) in counts.iter_mut().enumerate() {
        if c.contains(&(items.len() as u32)) {
            continue;
        }
        let mut offset = 0;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = offset;
            offset += n;
        }
        let shift = digit * DIGIT_BITS;
        for x in items.iter() {
            let bucket = &mut c[((key(x) >> shift) & mask) as usize];
            buffer[*bucket as usize] = *x;
            *bucket += 1;
        }
        std::mem::swap(items, &mut buffer);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn radix_sort_by_key_sorts() {
        let mut state = 1u64;
        let mut keys: Vec<u64> = (0..5000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                state >> (state % 40)
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        super::radix_sort_by_key(&mut keys, |&k| k);
        assert_eq!(keys, expected);
        // Stable by key: pairs sorted by their first half keep the second's order.
        let mut pairs: Vec<(u64, u64)> = expected.iter().rev().map(|&k| (k >> 20, k)).collect();
        let mut by_std = pairs.clone();
        by_std.sort_by_key(|p| p.0);
        super::radix_sort_by_key(&mut pairs, |p| p.0);
        assert_eq!(pairs, by_std);
    }
}
