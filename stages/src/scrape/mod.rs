//! The `scrape` stage kind: the source of songs. `source = "demo"` copies the
//! bundled demo corpus, a path takes a local folder of MIDI files, and
//! `"vgmusic"` downloads from vgmusic.com (or an imitation at `base_url`).

use crate::api::*;

mod local;
pub mod vgmusic;

pub struct ScrapeKind;

/// The consoles the vgmusic source knows, in the order of the original project.
pub const CONSOLES: &[&str] = &["nes", "snes", "gameboy", "tg16", "genesis"];

impl StageKind for ScrapeKind {
    fn name(&self) -> &'static str {
        "scrape"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "collects MIDI files: the bundled demo corpus, a local folder, or vgmusic.com"
    }
    fn params(&self) -> Vec<ParamSpec> {
        let consoles: Vec<Value> = CONSOLES.iter().map(|c| Value::from(*c)).collect();
        vec![
            ParamSpec::new(
                "source",
                ParamType::ANY_STR,
                "demo",
                "\"demo\" (bundled corpus), \"vgmusic\" (the web site), or a folder of MIDI files",
            ),
            ParamSpec::new(
                "consoles",
                ParamType::StrList { choices: CONSOLES },
                consoles,
                "vgmusic consoles to scrape (listing paths: see scrape/vgmusic/consoles.rs)",
            ),
            ParamSpec::new(
                "base_url",
                ParamType::ANY_STR,
                "https://www.vgmusic.com/",
                "vgmusic site root",
            ),
            ParamSpec::new(
                "max_files",
                ParamType::Int {
                    min: 0,
                    max: i64::MAX,
                },
                0,
                "at most this many files per console, in page order (0 = all)",
            ),
            ParamSpec::new(
                "delay_ms",
                ParamType::Int {
                    min: 0,
                    max: 600_000,
                },
                1000,
                "pause between two requests to one host, in milliseconds",
            ),
            ParamSpec::new(
                "timeout_s",
                ParamType::Int { min: 1, max: 3600 },
                30,
                "timeout of one request, in seconds",
            ),
            ParamSpec::new(
                "retries",
                ParamType::Int { min: 0, max: 20 },
                4,
                "retries of a failed request (5xx, timeout, reset)",
            ),
            ParamSpec::new(
                "backoff_ms",
                ParamType::Int {
                    min: 0,
                    max: 600_000,
                },
                2000,
                "first pause before a retry, doubled on each further retry (Retry-After wins when longer, capped at 120 s)",
            ),
            ParamSpec::new(
                "user_agent",
                ParamType::ANY_STR,
                concat!(
                    "vgmake/",
                    env!("CARGO_PKG_VERSION"),
                    " (research scraper; polite, 1 request/s)"
                ),
                "User-Agent header sent to the site",
            ),
        ]
    }

    fn validate(&self, params: &Params) -> Result<(), String> {
        match params.str("source") {
            "vgmusic" => vgmusic::validate(params),
            "demo" => Ok(()),
            folder => local::validate(folder),
        }
    }

    fn inputs(&self) -> Inputs {
        Inputs::Slots(&[])
    }

    fn needs_network(&self, params: &Params) -> bool {
        params.str("source") == "vgmusic"
    }

    fn external_inputs(
        &self,
        params: &Params,
        files: &ProjectFiles,
    ) -> Result<ExternalInputs, StageError> {
        match params.str("source") {
            "vgmusic" => Ok(ExternalInputs::default()),
            _ => local::external_inputs(params, files),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        match ctx.params.str("source") {
            "vgmusic" => vgmusic::run(ctx),
            _ => local::run(ctx),
        }
    }
}
