//! `vgmake report [VARIANT...] [-o FILE] [--embed] [--open]`: one HTML page
//! to compare built variants, hear and see their samples (crate::page).
//! Prints the page's path.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use crate::cli::Common;
use crate::commands::{EXIT_FAILED, usage_error};
use crate::page::{self, MediaMode, PageError};
use crate::project::Project;
use crate::store::Store;

/// The page's place when `-o` is not given, under the project folder.
const DEFAULT_OUTPUT: &str = "out/report.html";

pub struct Options<'a> {
    pub variants: &'a [String],
    pub output: Option<&'a Path>,
    pub embed: bool,
    pub open: bool,
}

pub fn run(host: &'static crate::Host, common: &Common, options: &Options) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let Some(store) = Store::open_existing(&project.cache_dir) else {
        return usage_error("nothing is built yet (run `vgmake build`)");
    };
    if store.ref_variants().is_empty() {
        return usage_error("nothing is built yet (run `vgmake build`)");
    }
    let names = match super::built_variants(&store, options.variants, "report") {
        Ok(n) => n,
        Err(d) => return usage_error(d),
    };
    let path = match options.output {
        Some(p) => absolute(p),
        None => project.dir.join(DEFAULT_OUTPUT),
    };
    match write(&project, &host.kinds, &store, &names, &path, options.embed) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    println!("{}", path.display());
    if options.open {
        open_in_browser(&path);
    }
    ExitCode::SUCCESS
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Gathers, renders and writes the page; a reader never sees half a file
/// (written beside it, then renamed).
fn write(
    project: &Project,
    kinds: &vgmake_api::Registry,
    store: &Store,
    names: &[String],
    path: &Path,
    embed: bool,
) -> Result<(), PageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let failed = |source| PageError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    // Relative links start at the page's real folder.
    let page_dir = dir.canonicalize().map_err(failed)?;
    let media = if embed {
        MediaMode::Embed
    } else {
        MediaMode::Link { page_dir }
    };
    let gathered = page::gather(project, kinds, store, names);
    let html = page::render(&gathered, &media)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".into());
    let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, html).map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        failed(e)
    })
}

/// Hands the page to the desktop's opener, where there is one; says so
/// where there is none (a server without a browser).
fn open_in_browser(path: &Path) {
    let openers: &[&str] = if cfg!(target_os = "macos") {
        &["open"]
    } else {
        &["xdg-open", "sensible-browser", "x-www-browser"]
    };
    for opener in openers {
        let started = std::process::Command::new(opener)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if started.is_ok() {
            return;
        }
    }
    eprintln!(
        "note: no browser opener found ({}); open the file above in a browser",
        openers.join(", ")
    );
}
