#!/usr/bin/env bash
# The prepared GPU check: everything a short GPU window should verify, in about 8 minutes, with every log
# written under $OUT (default runs/gpu-check) for the session note and benchmarks/README.md.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU, from the repository root
#
# 1. the environment: GPU, driver, torch and its CUDA; stops here, exit 2, when torch sees no CUDA GPU
# 2. install: `pip install -e ".[test]"` (README's GPU install: the machine's own CUDA torch is kept), or,
#    on a machine without a package registry, the wheels that benchmarks/gpu_wheels.sh put in .whl/
# 3. the device tests on CUDA: pytest -m device -k cuda (the CPU cases run in CI)
# 4. benchmarks/throughput.py on CUDA: ours vs diffusers, fp32/bf16, batch 64, contiguous and channels_last,
#    then with torch.compile; fraction of this GPU's measured matmul peak
# 5. the `small` preset trained on samples/notes for TRAIN_SECONDS (default 150), then 16 clips generated
#    and evaluated against the held-out notes
# Logs go to seven files in $OUT (summary.txt, install.log, tests.log, throughput.log, train.log, eval.log,
# clips.tar). A failing step is reported with its log's tail and the script goes on to the next one, then
# exits 1 naming every step that failed. The whole script keeps within BUDGET_SECONDS (default 540): a step
# is cut to the time left, and steps with under 20 s left are skipped and reported as such.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
BUDGET_SECONDS=${BUDGET_SECONDS:-540}
PY=${PYTHON:-python3}
RUN=runs/gpu-check-run  # checkpoints stay out of $OUT (hundreds of MB); only a few clips are packed
mkdir -p "$OUT"
: > "$OUT/summary.txt"
FAILED=()
export PYTHONUNBUFFERED=1

say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME LOG LIMIT_SECONDS COMMAND...: run under a time limit, appending to $OUT/LOG
  local name=$1 log=$OUT/$2 limit=$3 left=$((BUDGET_SECONDS - SECONDS))
  shift 3
  if [ $left -lt 20 ]; then FAILED+=("$name (skipped: out of time)"); say "$name SKIPPED: out of time"; return 1; fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name (limit $limit s): $*"
  echo "### $name: $*" >> "$log"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then say "$name ok in $((SECONDS - t0)) s"; return 0; fi
  FAILED+=("$name (exit $rc)")
  say "$name FAILED (exit $rc$([ $rc -eq 124 ] && echo ', time limit')); last lines of $log:"
  tail -n 15 "$log" | sed 's/^/   | /' | tee -a "$OUT/summary.txt"
  return $rc
}

say "environment"
{ command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } 2>&1 | tee -a "$OUT/summary.txt" \
  || say "nvidia-smi: not found"
"$PY" - <<'PYEOF' 2>&1 | tee -a "$OUT/summary.txt"
import sys
try:
    import torch
except ImportError:
    sys.exit(f"python {sys.version.split()[0]}: torch is not installed")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, built for CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
PYEOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  say "gpu_check: no CUDA GPU is visible to torch on this machine (see above); this script is for a machine with one"
  exit 2
fi

if ls .whl/*.whl > /dev/null 2>&1; then
  # no registry there: the wheels that benchmarks/gpu_wheels.sh downloaded, then the project, without deps
  step install install.log 300 bash -c "$PY -m pip install -q --no-index --no-deps --no-compile .whl/*.whl && \
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e ."
else
  step install install.log 300 "$PY" -m pip install -q -e ".[test]"
fi
"$PY" -c "import audiodiff, librosa, soundfile, soxr, diffusers; print('imports ok')" >> "$OUT/install.log" 2>&1 \
  || { say "install incomplete, stopping: $(tail -n 1 "$OUT/install.log")"; exit 1; }

step tests tests.log 150 "$PY" -m pytest -q -m device -k cuda -p no:cacheprovider -rs
TP=("$PY" benchmarks/throughput.py --device cuda --batch-size 64 --rounds 3 --steps 5 --peak-size 8192)
step throughput throughput.log 90 "${TP[@]}"
step throughput_channels_last throughput.log 60 "${TP[@]}" --ours audiodiff-lean --channels-last
step throughput_compile throughput.log 120 "${TP[@]}" --ours audiodiff-lean --compile

# A fixed time, not a fixed step count: training is interrupted after TRAIN_SECONDS (checkpoints are atomic)
# and generation uses the newest checkpoint.
rm -rf "$RUN"
left=$((BUDGET_SECONDS - SECONDS - 120))
[ "$TRAIN_SECONDS" -gt "$left" ] && TRAIN_SECONDS=$left
if [ "$TRAIN_SECONDS" -ge 30 ]; then
  say "train: small preset on samples/notes/train for $TRAIN_SECONDS s"
  timeout --signal=INT "$TRAIN_SECONDS" "$PY" -m audiodiff train samples/notes/train --out "$RUN" --preset small \
    --checkpoint-every 250 --device cuda --no-progress > "$OUT/train.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
    FAILED+=("train (exit $rc)"); say "train FAILED (exit $rc)"; tail -n 15 "$OUT/train.log" | sed 's/^/   | /'
  fi
  tail -n 3 "$RUN/loss.csv" 2>/dev/null | sed 's/^/   loss.csv: /' | tee -a "$OUT/summary.txt"
  step generate eval.log 60 "$PY" -m audiodiff generate "$RUN" --out "$RUN/generated" -n 16 --sampler dpmpp-2m \
    --steps 10 --device cuda --no-progress
  step evaluate eval.log 90 "$PY" -m audiodiff evaluate generated "$RUN/generated" --reference samples/notes/heldout \
    --train samples/notes/train
  tar -cf "$OUT/clips.tar" -C "$RUN" loss.csv config.toml generated/sample_000.wav generated/sample_000.png \
    generated/sample_001.wav generated/sample_001.png 2>/dev/null || say "no clips to pack"
else
  FAILED+=("train (skipped: out of time)"); say "train SKIPPED: out of time"
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  say "FAILED: ${FAILED[*]}"
  exit 1
fi
say "all steps passed in $SECONDS s; logs in $OUT"
