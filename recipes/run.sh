#!/usr/bin/env bash
# Train, generate and evaluate one recipe end to end; prints the README's tables at the end.
#
#   bash recipes/run.sh notes|digits|drums|loops DATA_DIR [OUT_DIR]
#
# DATA_DIR holds train/, heldout/ and metadata.csv (see recipes/prepare.sh). OUT_DIR defaults to
# runs/recipe-NAME. Environment: VOCODER=VOC_DIR reuses a trained vocoder instead of training one;
# VOC_STEPS (default 10000; 0: no trained vocoder, only the training-free rows); N (clips per generated set,
# default 64; digits: N / 8 per digit).
# Every step that already has its output is skipped, so an interrupted recipe continues where it stopped.
set -euo pipefail
NAME=${1:?usage: run.sh notes|digits|drums|loops DATA_DIR [OUT_DIR]}
DATA=${2:?usage: run.sh notes|digits|drums|loops DATA_DIR [OUT_DIR]}
OUT=${3:-runs/recipe-$NAME}
HERE="$(cd "$(dirname "$0")" && pwd)"
case $NAME in
  notes)  LABELS=family;   COND=(--label-column family) ;;
  digits) LABELS=digit;    COND=(--label-column digit) ;;
  drums)  LABELS=category; COND=(--label-column category) ;;
  loops)  LABELS=instruments; COND=(--channels 2) ;;
  *) echo "unknown recipe $NAME (notes, digits, drums, loops)" >&2; exit 2 ;;
esac
[ -d "$DATA/train" ] && [ -d "$DATA/heldout" ] || { echo "$DATA: needs train/ and heldout/ (recipes/prepare.sh)" >&2; exit 2; }
N=${N:-64}
mkdir -p "$OUT/logs"
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "diffusion model"
audiodiff train "$DATA/train" --out "$OUT/run" --config "$HERE/$NAME/config.toml" "${COND[@]}" --no-progress \
  2>&1 | tee -a "$OUT/logs/train.log"

VOC=${VOCODER:-$OUT/vocoder}
TRAINED=(--vocoder "$VOC")
if [ -z "${VOCODER:-}" ] && [ "${VOC_STEPS:-10000}" = 0 ]; then
  VOC= TRAINED=()
elif [ -z "${VOCODER:-}" ]; then
  step "vocoder"
  audiodiff vocoder train "$DATA/train" --out "$VOC" --steps "${VOC_STEPS:-10000}" --no-progress \
    2>&1 | tee -a "$OUT/logs/vocoder.log"
fi

step "vocoder round trips on held-out clips"
[ -s "$OUT/vocoders.json" ] || audiodiff evaluate vocoder --data "$DATA/heldout" --clips 50 --run "$OUT/run" \
  --vocoder griffinlim-32/pinv --vocoder griffinlim --vocoder pghi "${TRAINED[@]}" \
  $([ "$NAME" = digits ] && echo --speech) --json > "$OUT/vocoders.json"

step "embedder (classifier on $LABELS) for the evaluation"
[ -f "$OUT/embedder/embedder.safetensors" ] || audiodiff evaluate train-embedder "$DATA/train" --out "$OUT/embedder" \
  --label-column "$LABELS" --heldout "$DATA/heldout" --no-progress 2>&1 | tee -a "$OUT/logs/embedder.log"

# DPM-Solver++(2M) at 10 steps (issue 4's answer) with each vocoder; DDIM-50 (generate's default sampler) with the
# trained vocoder, or with Griffin-Lim when there is none.
# Every row carries the real-vs-real floor (held-out clips held back from the reference, as many as the
# generated set); the first row also runs the memorization check (--train).
FLOOR=(--train "$DATA/train")
ROWS=("dpmpp-2m 10 griffinlim" "dpmpp-2m 10 pghi")
if [ -n "$VOC" ]; then ROWS+=("dpmpp-2m 10 $VOC" "ddim 50 $VOC"); else ROWS+=("ddim 50 griffinlim"); fi
for row in "${ROWS[@]}"; do
  set -- $row
  voc=$3
  gen="$OUT/generated/$1-$2-$(basename "$voc")"
  [ -s "$gen.json" ] && continue
  step "generate $gen"
  rm -rf "$gen"
  if [ "$NAME" = digits ]; then  # N / 8 clips per digit (8 for N = 64: 80 clips), in subfolders named by digit
    for d in 0 1 2 3 4 5 6 7 8 9; do
      audiodiff generate "$OUT/run" --out "$gen/$d" -n $(( (N + 7) / 8 )) --sampler "$1" --steps "$2" --label "$d" \
        --seed $(( 1000 * d )) --vocoder "$voc" --no-progress > /dev/null
    done
  else
    audiodiff generate "$OUT/run" --out "$gen" -n "$N" --sampler "$1" --steps "$2" --vocoder "$voc" --no-progress > /dev/null
  fi
  audiodiff evaluate generated "$gen" --reference "$DATA/heldout" "${FLOOR[@]}" \
    --embedder "$OUT/embedder" --json > "$gen.json"
  FLOOR=()
done

step "tables"
python "$HERE/tables.py" "$OUT" | tee "$OUT/tables.md"
