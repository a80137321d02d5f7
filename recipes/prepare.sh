#!/usr/bin/env bash
# Put a recipe's data set in place: DATA_DIR/NAME/{train,heldout,metadata.csv}.
#
#   bash recipes/prepare.sh notes|digits|drums DATA_DIR [--from EXISTING_SET_DIR]
#
# With --from, an existing copy of the set (a folder holding train/, heldout/ and metadata.csv, e.g. one
# built earlier) is linked into place and checked. Otherwise the set is rendered from Debian packages
# (fluidsynth + GM soundfonts, espeak-ng/flite/festival voices, drum kits; apt-get, ~2-4 min) by the
# project's dataset builder, make_datasets.sh, found at $AUDIODIFF_DATASETS or ../shared/data/ beside the
# checkout; with seed 0 it is deterministic, so the recipe tables are reproducible from it.
set -euo pipefail
NAME=${1:?usage: prepare.sh notes|digits|drums DATA_DIR [--from EXISTING_SET_DIR]}
DATA=${2:?usage: prepare.sh notes|digits|drums DATA_DIR [--from EXISTING_SET_DIR]}
case $NAME in notes|digits|drums) ;; *) echo "unknown set $NAME (notes, digits, drums)" >&2; exit 2 ;; esac
mkdir -p "$DATA"
if [ "${3:-}" = --from ]; then
  SRC=$(cd "${4:?--from needs a folder}" && pwd)
  ln -sfn "$SRC" "$DATA/$NAME"
else
  HERE="$(cd "$(dirname "$0")" && pwd)"
  BUILDER=${AUDIODIFF_DATASETS:-$HERE/../../shared/data/make_datasets.sh}
  if [ ! -f "$BUILDER" ]; then
    echo "no dataset builder at $BUILDER: set AUDIODIFF_DATASETS=/path/to/make_datasets.sh, or pass --from" >&2
    exit 2
  fi
  bash "$BUILDER" "$DATA" --sets "$NAME" --seed 0
fi
for part in train heldout metadata.csv; do
  [ -e "$DATA/$NAME/$part" ] || { echo "$DATA/$NAME: no $part" >&2; exit 1; }
done
echo "$DATA/$NAME: $(find -L "$DATA/$NAME/train" -name '*.wav' | wc -l) training clips," \
     "$(find -L "$DATA/$NAME/heldout" -name '*.wav' | wc -l) held-out clips"
