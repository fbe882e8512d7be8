//! Tools for people looking at data, outside any pipeline:
//! `vgmake encode FILE.mid` prints the token line, `vgmake decode FILE.txt
//! -o OUT.mid` writes MIDI.

use std::path::Path;
use std::process::ExitCode;

use vgmake_stages::midi::{self, DecodeOptions, EncodeOptions, InstrumentGroups, Transpose};

use crate::cli::EncodeArgs;
use crate::commands::{EXIT_FAILED, usage_error};

pub fn encode(args: &EncodeArgs) -> ExitCode {
    let Some(instrument_groups) = InstrumentGroups::parse(&args.instrument_groups) else {
        return usage_error(format!(
            "--instrument-groups: expected none, family or chip, found `{}`",
            args.instrument_groups
        ));
    };
    let Some(transpose) = Transpose::parse(&args.transpose) else {
        return usage_error(format!(
            "--transpose: expected none or c, found `{}`",
            args.transpose
        ));
    };
    let options = EncodeOptions {
        steps_per_beat: args.steps_per_beat,
        velocity_step: args.velocity_step,
        tempo_step: args.tempo_step,
        note_off_velocity: !args.no_note_off_velocity,
        instrument_groups,
        transpose,
    };
    match midi::encode_file(&args.file, &options) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        // An I/O error names the file already.
        Err(e @ midi::MidiError::Io(_)) => usage_error(e),
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}

pub fn decode(file: &Path, output: &Path, steps_per_beat: u32) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return usage_error(format!("cannot read {}: {e}", file.display())),
    };
    // A file of several songs (an encode stage's tokens.txt): the first one.
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match midi::decode::decode_tokens(line, &DecodeOptions { steps_per_beat }) {
        Ok(bytes) => match std::fs::write(output, bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => usage_error(format!("cannot write {}: {e}", output.display())),
        },
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `vgmake render FILE.mid -o FILE.wav`: the sample stage's chip synth on any MIDI file.
pub fn render(file: &Path, output: &Path) -> ExitCode {
    match vgmake_stages::sample::render_midi_file(file, output) {
        Ok(seconds) => {
            eprintln!("wrote {} ({seconds:.1} s of audio)", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `vgmake roll FILE.mid -o FILE.png`: a piano roll of any MIDI file.
pub fn roll(file: &Path, output: &Path) -> ExitCode {
    match vgmake_stages::sample::piano_roll_file(file, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
