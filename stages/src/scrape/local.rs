//! Local sources: the bundled demo corpus or a folder of MIDI files.

use crate::api::*;

pub fn external_inputs(
    _params: &Params,
    _project_dir: &std::path::Path,
    _data_dir: &std::path::Path,
) -> Result<ExternalInputs, StageError> {
    Err(StageError::Config("local sources are not built yet".into()))
}

pub fn run(_ctx: &StageContext) -> Result<(), StageError> {
    Err(StageError::Config("local sources are not built yet".into()))
}
