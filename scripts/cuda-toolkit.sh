# Sourced by cuda-check.sh and gpu-check.sh (not run on its own): makes nvcc
# and the CUDA headers available to candle's build scripts.
#
# Where nvcc is already on PATH (a machine with the CUDA toolkit) it is
# used as it is. Otherwise the toolkit's pip wheels are installed into
# $VGMAKE_CUDA_PREFIX (default: target/cuda-toolkit, ignored by git), pinned
# to one CUDA release: unpinned, pip mixes versions and ptxas rejects the
# PTX. The versions are those NVIDIA's own `cuda-toolkit==13.4.3`
# meta-package pins (its CCCL is numbered 13.3.4.3.1); cudarc 0.19 knows
# CUDA up to 13.4, so 13.5 would not do.
CUDA_WHEELS=(
    nvidia-cuda-nvcc==13.4.92
    nvidia-nvvm==13.4.92
    nvidia-cuda-crt==13.4.92
    nvidia-cuda-runtime==13.4.92
    nvidia-cuda-cccl==13.3.4.3.1
)

if ! command -v nvcc >/dev/null 2>&1; then
    prefix="${VGMAKE_CUDA_PREFIX:-$PWD/target/cuda-toolkit}"
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
# the pinned wheels (13.4), which cudarc 0.19 supports.
if nvcc --version 2>/dev/null | grep -q "release 13.4"; then
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13040}"
fi
