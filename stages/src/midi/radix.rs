//! Sorting packed u64 keys in linear passes (the encoder's hot sorts).

const DIGIT_BITS: usize = 11;
const DIGITS: usize = 64usize.div_ceil(DIGIT_BITS);
const BUCKETS: usize = 1 << DIGIT_BITS;

/// LSD radix sort, 11 bits per pass: the counts of every digit come from
/// one read, and digits all keys share are skipped (a few linear passes
/// instead of n log n comparisons).
pub fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < 64 || keys.len() >= u32::MAX as usize {
        keys.sort_unstable();
        return;
    }
    let mask = (BUCKETS - 1) as u64;
    let mut counts = vec![[0u32; BUCKETS]; DIGITS];
    for &k in keys.iter() {
        for (digit, c) in counts.iter_mut().enumerate() {
            c[((k >> (digit * DIGIT_BITS)) & mask) as usize] += 1;
        }
    }
    let mut buffer = vec![0u64; keys.len()];
    for (digit, c) in counts.iter_mut().enumerate() {
        if c.contains(&(keys.len() as u32)) {
            continue;
        }
        let mut offset = 0;
        for slot in c.iter_mut() {
            let n = *slot;
            *slot = offset;
            offset += n;
        }
        let shift = digit * DIGIT_BITS;
        for &k in keys.iter() {
            let bucket = &mut c[((k >> shift) & mask) as usize];
            buffer[*bucket as usize] = k;
            *bucket += 1;
        }
        std::mem::swap(keys, &mut buffer);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn radix_sort_sorts() {
        let mut state = 1u64;
        let mut keys: Vec<u64> = (0..5000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                state >> (state % 40)
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        super::radix_sort(&mut keys);
        assert_eq!(keys, expected);
    }
}
