#!/usr/bin/env bash
# The GPU checks of the CUDA backend in one run, for a CUDA machine without network access
# (CuPy, torch with CUDA, Cython, setuptools and numpy already installed):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # default: $OUT, else ./gpu_check_out
#
# 1. installs fastnn from this checkout (pip --no-build-isolation, offline);
# 2. runs the GPU tests (tests/test_cuda.py -m gpu: every op against the CPU backend, dropout
#    masks bit for bit, CNN/RNN/LSTM/GRU training against the CPU, GPU-trained model loaded on
#    the CPU), then the whole suite once more;
# 3. runs the GPU benchmarks of shared/BENCHMARKS.md against PyTorch CUDA eager.
# Everything lands in OUT_DIR (summary.txt first). Exit status: 0 when the tests passed.
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

say "# fastnn GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
python -c "import cupy, torch; print('cupy', cupy.__version__, '| torch', torch.__version__, '| cuda', torch.version.cuda)" \
    2>&1 | tee -a "$SUMMARY"

if ! python -m pip install --no-build-isolation --no-deps . > "$OUT_DIR/install.log" 2>&1; then
    say "install: FAILED (see install.log)"; tail -30 "$OUT_DIR/install.log"; exit 2
fi
say "install: ok"
(cd /tmp && python -c "import fastnn; fastnn.show_config(); print('cuda_available', fastnn.cuda_available())") \
    2>&1 | tee -a "$SUMMARY"

cd tests
timeout 900 python -m pytest -q -p no:cacheprovider -m gpu -rfE test_cuda.py > "$OUT_DIR/gpu_tests.txt" 2>&1
gpu_rc=$?
say "gpu tests (pytest -m gpu tests/test_cuda.py): rc=$gpu_rc  $(tail -1 "$OUT_DIR/gpu_tests.txt")"
timeout 900 python -m pytest -q -p no:cacheprovider > "$OUT_DIR/all_tests.txt" 2>&1
all_rc=$?
say "whole suite: rc=$all_rc  $(tail -1 "$OUT_DIR/all_tests.txt")"
cd ..

timeout 900 python benchmarks/run.py --device cuda --workloads mlp128,mlp1024,cnn64,lstm64 --threads 1 \
    --repeats 5 --seconds 0.3 --json "$OUT_DIR/gpu_bench.jsonl" > "$OUT_DIR/gpu_bench.txt" 2>&1
say "gpu benchmarks: rc=$?"
cat "$OUT_DIR/gpu_bench.txt" | tee -a "$SUMMARY"
[ "$gpu_rc" -eq 0 ] && [ "$all_rc" -eq 0 ]
