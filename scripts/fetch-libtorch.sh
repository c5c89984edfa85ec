#!/usr/bin/env bash
# Fetch libtorch 2.13 (CPU part) for the `torch` cargo feature, from the PyPI package registry only.
#
# Lays out $EDDY_CACHE/libtorch/{include,lib,share} from the wheels
#   torch==2.13.0                 headers + libtorch_cpu/libtorch/libc10 (+ libgomp etc.)
#   nvidia-cuda-runtime==13.0.96  libcudart.so.13  (libtorch_cpu.so links it even on CPU)
#   nvidia-cuda-cupti==13.0.85    libcupti.so.13   (same)
# CUDA-only libraries (libtorch_cuda, libc10_cuda, nvrtc, ...) are left out: the result runs on CPU.
# Idempotent: a complete layout (marked by .eddy-complete) is reused; downloaded wheels are kept.
# Prints the LIBTORCH directory on its last line.  Usage: scripts/fetch-libtorch.sh
set -euo pipefail

CACHE="${EDDY_CACHE:-$HOME/.cache/eddy}"
DEST="$CACHE/libtorch"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3}"

if [[ -f "$DEST/.eddy-complete" ]]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$WHEELS"
fetch() { # name==version glob
  if ! ls "$WHEELS"/$2 >/dev/null 2>&1; then
    "$PY" -m pip download --no-deps --only-binary=:all: --dest "$WHEELS" "$1" >&2
  fi
  ls "$WHEELS"/$2 | head -n1
}
torch_whl=$(fetch torch==2.13.0 'torch-2.13.0-*.whl')
rt_whl=$(fetch nvidia-cuda-runtime==13.0.96 'nvidia_cuda_runtime-13.0.96-*.whl')
cupti_whl=$(fetch nvidia-cuda-cupti==13.0.85 'nvidia_cuda_cupti-13.0.85-*.whl')

tmp="$CACHE/libtorch.partial"
rm -rf "$tmp"
mkdir -p "$tmp/lib"
unzip -q -o "$torch_whl" 'torch/include/*' 'torch/share/*' 'torch/lib/*' 'torch/version.py' -d "$tmp/x" >&2
# torch-sys checks this file against the version it was generated for
sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$tmp/x/torch/version.py" > "$tmp/build-version"
grep -q '^2\.13\.0' "$tmp/build-version"
mv "$tmp/x/torch/include" "$tmp/x/torch/share" "$tmp/"
for so in "$tmp"/x/torch/lib/*; do
  case "$(basename "$so")" in
    *cuda*|*nvrtc*|*nccl*|*cudnn*|*cublas*|*cufft*|*cusparse*|*curand*|*cusolver*|*nvToolsExt*|*nvJitLink*|*cufile*|*nvshmem*|libtorch_python.so|libshm*|*.a) ;;
    *) mv "$so" "$tmp/lib/" ;;
  esac
done
for whl in "$rt_whl" "$cupti_whl"; do
  unzip -q -o "$whl" -d "$tmp/y" >&2
done
find "$tmp/y" -name 'libcudart.so.13*' -exec cp {} "$tmp/lib/" \;
find "$tmp/y" -name 'libcupti.so.13*' -exec cp {} "$tmp/lib/" \;
ls "$tmp/lib"/libcudart.so.13* "$tmp/lib"/libcupti.so.13* >/dev/null
rm -rf "$tmp/x" "$tmp/y"
touch "$tmp/.eddy-complete"
rm -rf "$DEST"
mv "$tmp" "$DEST"
echo "$DEST"
