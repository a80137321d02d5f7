#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels that benchmarks/gpu_check.sh installs on a GPU machine
# that has no package registry but ships Python 3.12 with CUDA PyTorch, numpy, scipy, numba, scikit-learn,
# matplotlib, click, tqdm, safetensors, pytest and hypothesis: the project's other dependencies, for
# manylinux x86_64, into .whl/ (ignored by git; about 10 MB). Then run the check there with .whl carried.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# pinned to what the CPU environment resolved (pip list in a fresh `pip install -e ".[test]"`, 2026-11-30)
PACKAGES=(librosa==0.11.0 soundfile==0.14.0 soxr==1.1.0 tomli_w==1.2.0 diffusers==0.42.1 audioread==3.1.0
          pooch==1.9.0 decorator==5.3.1 cffi==2.1.1 pycparser==3.12 importlib_metadata==10.2.0
          platformdirs==4.14.9 lazy_loader==0.6 msgpack==1.2.4 zipp==4.1.2)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 any; do PLATFORMS+=(--platform "$p"); done
for pkg in "${PACKAGES[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$pkg" || { echo "gpu_wheels: no wheel of $pkg for Python $PYV x86_64" >&2; exit 1; }
done
ls .whl
du -sh .whl
