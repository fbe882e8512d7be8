//! The vgmusic.com source.

use crate::api::*;

pub fn run(_ctx: &StageContext) -> Result<(), StageError> {
    Err(StageError::Config(
        "source \"vgmusic\" is not built yet".into(),
    ))
}
