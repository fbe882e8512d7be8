//! vgmake's stage API: the only thing the engine knows about a stage kind,
//! and the only thing a stage kind knows about the engine.
//!
//! A kind declares its parameters, what it reads from its dependencies, the
//! parameters its resumable state ignores, the metrics it reports and what
//! `vgmake report` shows of its output (curves, media, summaries); its
//! `run` gets the effective parameters, the dependencies' output folders
//! (read-only) and an empty output folder to fill. The cache, its keys and
//! its paths belong to the engine: a kind reaches them only through the
//! per-item [`Memo`] and [`StageContext::state_dir`], and lists folders
//! through [`Folders`] (answered from the engine's listing cache).

mod context;
mod error;
mod folders;
mod inputs;
mod kind;
mod metrics;
mod params;
mod registry;
mod report;
pub mod seal;

pub use context::{
    ExternalInputs, FileHashes, Input, Measurements, Memo, NoProgress, PGID_FILE, Progress,
    StageContext,
};
pub use error::{IoContext, StageError};
pub use folders::{EntryKind, Folders, Listing, ProjectFiles, ReadFolders};
pub use inputs::{InputError, Inputs, Slot};
pub use kind::StageKind;
pub use metrics::{Better, EVERY_NUMBER, MetricSpec, Source};
pub use params::{ParamError, ParamSpec, ParamType, Params, Setting, Value};
pub use registry::Registry;
pub use report::{
    CurveSpec, Fact, GallerySpec, JsonAt, MediaFile, MediaKind, ReferenceSpec, ReportSpec,
    SummarySpec,
};
