#!/usr/bin/env bash
# Quality of the README's main job against its training steps: scores the run's own checkpoints, then trains the
# same run further (it continues; the learning rate is constant after warm-up, so a run continued to S steps is
# the run that would have been trained for S) and scores it again at each of STEPS.
#
#   bash experiments/main_job_curve.sh RUN VAL EMBEDDER OUT [STEPS...]
#   bash experiments/main_job_curve.sh runs/notes-tiny VAL runs/recipe-notes/embedder runs/curve 2250 3000
#
# RUN: a main-job run folder (`audiodiff train samples/notes/train --out RUN --preset tiny --label-column family`;
# checkpoints every 500 steps; or another config's run on the same data), trained further on samples/notes/train
# (DATA=... to change). Each point: 66 clips with the run's sampling defaults (`audiodiff generate CKPT -n 66
# --seed 10000 --label-mix even`: 6 per family, DDIM-50 + Griffin-Lim, the run's guidance) scored by `audiodiff
# evaluate generated` against VAL (never trained on) in the melstats and EMBEDDER spaces, with the embedder's class
# accuracy (from the labels `generate` records in the clips' metadata.csv). The last column is the wall seconds of
# each further training stage. Prints a table and the command.
set -euo pipefail
shopt -s nullglob
[ $# -ge 4 ] || { sed -n 2,14p "$0"; exit 2; }
RUN=$1 VAL=$2 EMB=$3 OUT=$4; shift 4
DATA=${DATA:-samples/notes/train}
mkdir -p "$OUT"
say() { echo "+ $*" >&2; "$@"; }

score() {  # score STEP: the checkpoint of that step, sampled and scored
  local step=$1 at="$OUT/at$1" ckpt
  ckpt=$(printf '%s/checkpoints/step_%08d.safetensors' "$RUN" "$step")
  [ -f "$ckpt" ] || { echo "no $ckpt" >&2; return 1; }
  [ -d "$at/clips" ] || say audiodiff generate "$ckpt" --out "$at/clips" -n 66 --seed 10000 --batch-size 22 --label-mix even --no-progress >/dev/null
  [ -f "$at/scores.json" ] || say audiodiff evaluate generated "$at/clips" --reference "$VAL" --embedder "$EMB" --json >"$at/scores.json"
}

for ckpt in "$RUN"/checkpoints/step_*.safetensors; do
  step=$(basename "$ckpt" .safetensors); score $((10#${step#step_}))
done
for steps in "$@"; do
  start=$(date +%s)
  say audiodiff train "$DATA" --out "$RUN" --steps "$steps" --label-column family --no-progress >"$OUT/train-$steps.log" 2>&1
  echo "$steps $(( $(date +%s) - start ))" >>"$OUT/train-seconds.txt"
  score "$steps"
done

python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
seconds = dict(line.split() for line in (out / "train-seconds.txt").read_text().splitlines()) if (out / "train-seconds.txt").exists() else {}
print("| steps | melstats FD [95%] | floor | embedder FD [95%] | floor | IS (real) | class accuracy | training s for this stage |")
print("|---|---|---|---|---|---|---|---|")
fd = lambda s: f"{s['fd']:.1f} [{s['fd_ci'][0]:.1f}, {s['fd_ci'][1]:.1f}]"
for at in sorted(out.glob("at*/scores.json"), key=lambda p: int(p.parent.name[2:])):
    d, step = json.loads(at.read_text()), at.parent.name[2:]
    m, e = d["melstats"], d["embedder"]
    print(f"| {step} | {fd(m['generated'])} | {fd(m['floor'])} | {fd(e['generated'])} | {fd(e['floor'])} | "
          f"{e['generated_classes']['is']:.2f} ({e['reference_classes']['is']:.2f}) | "
          f"{e['generated_classes'].get('accuracy', float('nan')):.0%} | {seconds.get(step, '-')} |")
EOF
echo "command: bash experiments/main_job_curve.sh $RUN $VAL $EMB $OUT $*"
