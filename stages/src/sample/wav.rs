//! 16-bit mono WAV files at the synthesizer's rate, written with hound.

use std::path::Path;

use super::synth::SAMPLE_RATE;

/// Writes samples in -1..=1 (clamped) as 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |e: hound::Error| format!("{}: {e}", path.display());
    let mut writer = hound::WavWriter::create(path, spec).map_err(fail)?;
    let mut ints = writer.get_i16_writer(samples.len() as u32);
    for &s in samples {
        ints.write_sample((s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16);
    }
    ints.flush().map_err(fail)?;
    writer.finalize().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_hound_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, &[0.0, 0.5, -1.0, 2.0]).unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().sample_rate, 44_100);
        assert_eq!(reader.spec().bits_per_sample, 16);
        let back: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, [0, 16384, -32767, 32767]);
    }
}
