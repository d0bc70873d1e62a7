#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (for a machine that has one):
# the tests marked gpu, then the GPU case of the benchmark. Results go to $OUT (default outputs/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
$PY -m pytest -q -m gpu -rs 2>&1 | tee "$OUT/pytest-gpu.txt"
tests=${PIPESTATUS[0]}
$PY scripts/benchmark.py --cases gpu --json "$OUT/bench-gpu.json" --markdown 2>&1 | tee "$OUT/bench-gpu.txt"
exit "$tests"
