# Sourced by cuda-check.sh and gpu-check.sh (not run on its own): makes nvcc
# and the CUDA headers available to candle's build scripts.
#
# Where nvcc is already on PATH (a machine with the CUDA toolkit) it is
# used as it is. Otherwise the toolkit's pip wheels are installed into
# $VGMAKE_CUDA_PREFIX (default: target/cuda-toolkit, ignored by git), pinned
# to one CUDA release: unpinned, pip mixes versions and ptxas rejects the
# PTX. The release is 13.0, the oldest of CUDA 13: candle's kernels ship as
# PTX that the driver compiles when they load, and a driver takes PTX only
# from a toolkit no newer than itself (a 13.4 build fails on the 580
# drivers, which are CUDA 13.0). The versions are those NVIDIA's own
# `cuda-toolkit==13.0.2` meta-package pins.
CUDA_RELEASE=13.0
CUDA_WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)

if ! command -v nvcc >/dev/null 2>&1; then
    prefix="${VGMAKE_CUDA_PREFIX:-$PWD/target/cuda-toolkit-$CUDA_RELEASE}"
    root="$prefix/nvidia/cu13"
    if [ ! -x "$root/bin/nvcc" ]; then
        echo "cuda-toolkit: installing ${CUDA_WHEELS[*]} into $prefix" >&2
        python3 -m pip install --quiet --disable-pip-version-check --no-deps \
            --target "$prefix" "${CUDA_WHEELS[@]}"
    fi
    # The wheels share one tree: bin/nvcc, nvvm/ (cicc, libdevice), include/
    # (runtime, crt, cccl headers), lib/ (cudart).
    export CUDA_HOME="$root"
    export PATH="$root/bin:$PATH"
    export CPATH="$root/include${CPATH:+:$CPATH}"
    export LIBRARY_PATH="$root/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    export LD_LIBRARY_PATH="$root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# cudarc reads the CUDA version from `nvcc --version`; say it outright for
# the pinned wheels, so its bindings ask the driver for nothing newer.
if nvcc --version 2>/dev/null | grep -q "release $CUDA_RELEASE"; then
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
fi
# candle's build scripts ask nvidia-smi for the GPU's compute capability;
# with no GPU here, build for Hopper (H100/H200): CUDA_COMPUTE_CAP=90.
if ! command -v nvidia-smi >/dev/null 2>&1; then
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
fi
# nvcc runs from candle's build script on its own thread pool; follow -j.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-${CARGO_BUILD_JOBS:-2}}"
