#!/usr/bin/env bash
# Rebuilds samples/editing/ (the README's editing pictures) from the main job's run:
#   audiodiff train samples/notes/train --out runs/notes-tiny --preset tiny
#   bash samples/make_editing.sh runs/notes-tiny
set -euo pipefail
RUN=${1:-runs/notes-tiny}
OUT=samples/editing
A=samples/notes/train/fluidr3_organ_019-041-100.flac
B=samples/notes/train/fluidr3_mallet_013-065-127.flac
common=(--force --no-progress)
audiodiff reconstruct "$A" --out "$OUT/input_organ.wav" --force
audiodiff reconstruct "$B" --out "$OUT/input_mallet.wav" --force
audiodiff vary "$RUN" "$A" --out "$OUT/vary" --strength 0.4 -n 2 "${common[@]}"
audiodiff inpaint "$RUN" "$A" --out "$OUT/inpaint" --start 0.3 --end 0.6 "${common[@]}"
audiodiff inpaint "$RUN" "$A" --out "$OUT/inpaint-band" --start 0.2 --end 0.8 --band 1000 4000 "${common[@]}"
audiodiff continue "$RUN" "$A" --out "$OUT/continue" --seconds 3 "${common[@]}"
audiodiff interpolate "$RUN" "$A" "$B" --out "$OUT/interpolate" --frames 5 "${common[@]}"
audiodiff generate "$RUN" --out "$OUT/loop" -n 1 --loop --seconds 2 "${common[@]}"
