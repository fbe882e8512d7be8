//! The `device` parameter of `train` and `sample`: the candle device, and
//! the check (at validation, before anything runs) that this build can
//! drive it.

use candle_core::Device;

use crate::api::{ParamSpec, ParamType, StageError};

/// The doc of the `device` parameter, saying whether this build has CUDA.
pub const DOC: &str = if cfg!(feature = "cuda") {
    "cpu, or cuda (an NVIDIA GPU: this build has the `cuda` feature)"
} else {
    "cpu, or cuda (an NVIDIA GPU: needs a build with `cargo build --release --features cuda`)"
};

/// The `device` parameter as both kinds declare it.
pub fn spec() -> ParamSpec {
    ParamSpec::new(
        "device",
        ParamType::Str {
            choices: &["cpu", "cuda"],
        },
        "cpu",
        DOC,
    )
}

/// Whether this build can run on `name`; the error says how to rebuild.
pub fn check(name: &str) -> Result<(), String> {
    if name == "cuda" && !cfg!(feature = "cuda") {
        return Err(
            "`device = \"cuda\"` needs vgmake built with CUDA support: rebuild it with \
             `cargo build --release --features cuda` (nvcc and the CUDA headers are needed \
             to build, scripts/cuda-check.sh installs them from pip; a GPU and its driver to \
             run), or use `device = \"cpu\"`"
                .into(),
        );
    }
    Ok(())
}

/// The candle device called `name` (the first GPU for `cuda`).
pub fn open(name: &str) -> Result<Device, StageError> {
    check(name).map_err(StageError::Config)?;
    match name {
        "cpu" => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        "cuda" => Device::new_cuda(0).map_err(|e| {
            StageError::Config(format!(
                "`device = \"cuda\"`: no usable CUDA GPU ({e}); use `device = \"cpu\"`"
            ))
        }),
        other => Err(StageError::Config(format!("unknown device `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_always_there_and_cuda_only_with_the_feature() {
        assert!(check("cpu").is_ok());
        assert!(open("cpu").unwrap().is_cpu());
        if !cfg!(feature = "cuda") {
            let err = check("cuda").unwrap_err();
            assert!(
                err.contains("cargo build --release --features cuda"),
                "{err}"
            );
        }
    }
}
