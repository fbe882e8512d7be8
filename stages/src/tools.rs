//! Tools for people looking at data, outside any pipeline, offered as
//! subcommands of the `vgmake` binary: `encode FILE.mid` prints the token
//! line, `decode FILE.txt -o OUT.mid` writes MIDI, `lines DIR` prints a song
//! set's songs as token lines, `render` and `roll` run
//! the sample stage's chip synth and piano roll on any MIDI file.
//!
//! The binary adds [`Tool`] to its command line (`Tool::augment_subcommands`)
//! and hands a parsed one to [`run`]; the engine never sees these.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::midi::{self, DecodeOptions, EncodeOptions, InstrumentGroups, NoteFormat, Transpose};

/// Exit codes, as the engine's: 1 = the file could not be used, 2 = bad arguments.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(clap::Subcommand)]
pub enum Tool {
    /// Print the token line of a MIDI file (the encode stage's format).
    Encode(EncodeArgs),
    /// Write a MIDI file from a token line (the first line of FILE).
    Decode {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Grid steps per quarter note the tokens were made with.
        #[arg(long, default_value_t = 16)]
        steps_per_beat: u32,
    },
    /// Print the token lines of a song set folder (an encode or limit output, e.g. out/encode): one line per song.
    Lines { dir: PathBuf },
    /// Render a MIDI file to WAV with the built-in chip synth (pulse, triangle, noise).
    Render {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Draw a piano roll (time x pitch, a colour per instrument) of a MIDI file as PNG.
    Roll {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    pub file: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub steps_per_beat: u32,
    #[arg(long, default_value_t = 10)]
    pub velocity_step: u8,
    #[arg(long, default_value_t = 10)]
    pub tempo_step: u32,
    /// End tokens without velocity (`end:i{program}:{pitch}`).
    #[arg(long)]
    pub no_note_off_velocity: bool,
    /// none, family (16 GM families) or chip (lead/harmony/bass/drums).
    #[arg(long, default_value = "none")]
    pub instrument_groups: String,
    /// none, or c (move the song to C major / A minor).
    #[arg(long, default_value = "none")]
    pub transpose: String,
    /// on_off (start and end events) or duration (`d:N` lengths, no end tokens).
    #[arg(long, default_value = "on_off")]
    pub note_format: String,
}

/// Runs one tool; its exit code.
pub fn run(tool: &Tool) -> ExitCode {
    match tool {
        Tool::Encode(args) => encode(args),
        Tool::Decode {
            file,
            output,
            steps_per_beat,
        } => decode(file, output, *steps_per_beat),
        Tool::Lines { dir } => lines(dir),
        Tool::Render { file, output } => render(file, output),
        Tool::Roll { file, output } => roll(file, output),
    }
}

fn usage_error(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_USAGE)
}

fn failed(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_FAILED)
}

fn encode(args: &EncodeArgs) -> ExitCode {
    let Some(instrument_groups) = InstrumentGroups::parse(&args.instrument_groups) else {
        return usage_error(format!(
            "--instrument-groups: expected none, family or chip, found `{}`",
            args.instrument_groups
        ));
    };
    let Some(format) = NoteFormat::parse(&args.note_format) else {
        return usage_error(format!(
            "--note-format: expected on_off or duration, found `{}`",
            args.note_format
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
    let encoded = midi::read::read_file(&args.file)
        .and_then(|bytes| midi::encode_bytes_as(&bytes, &options, format));
    match encoded {
        Ok(line) => print_line(&line),
        // An I/O error names the file already.
        Err(e @ midi::MidiError::Io(_)) => usage_error(e),
        Err(e) => failed(format!("{}: {e}", args.file.display())),
    }
}

/// Prints `line` to stdout like a Unix filter: a reader that went away
/// (`vgmake encode f.mid | head -c 10`) ends the program quietly.
fn print_line(line: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => failed(format!("writing to stdout: {e}")),
    }
}

fn decode(file: &Path, output: &Path, steps_per_beat: u32) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return usage_error(format!("cannot read {}: {e}", file.display())),
    };
    // A file of several songs (`vgmake lines` output, tokens.txt): the first one.
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    match midi::decode::decode_tokens(line, &DecodeOptions { steps_per_beat }) {
        Ok(bytes) => match std::fs::write(output, bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => usage_error(format!("cannot write {}: {e}", output.display())),
        },
        Err(e) => failed(format!("{}: {e}", file.display())),
    }
}

/// `vgmake lines DIR`: the songs of a song set as token lines (what
/// encode's `tokens.txt` holds, byte for byte).
fn lines(dir: &Path) -> ExitCode {
    let set = match crate::songs::SongSet::read(dir) {
        Ok(set) => set,
        Err(e) => return usage_error(e),
    };
    match set.write_lines_to(std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => failed(format!("writing to stdout: {e}")),
    }
}

/// `vgmake render FILE.mid -o FILE.wav`: the sample stage's chip synth on any MIDI file.
fn render(file: &Path, output: &Path) -> ExitCode {
    match crate::sample::render_midi_file(file, output) {
        Ok(seconds) => {
            eprintln!("wrote {} ({seconds:.1} s of audio)", output.display());
            ExitCode::SUCCESS
        }
        Err(e) => failed(e),
    }
}

/// `vgmake roll FILE.mid -o FILE.png`: a piano roll of any MIDI file.
fn roll(file: &Path, output: &Path) -> ExitCode {
    match crate::sample::piano_roll_file(file, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(e),
    }
}
