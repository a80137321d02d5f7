#!/usr/bin/env bash
# Put a recipe's data set in place: DATA_DIR/NAME/{train,heldout,metadata.csv}.
#
#   bash recipes/prepare.sh notes|digits|drums|loops DATA_DIR [--from EXISTING_SET_DIR]
#
# By default the set is rendered from Debian packages by the project's own builder, recipes/make_sets.py
# (fluidsynth + GM SoundFonts, espeak-ng and flite voices, hydrogen drum kits; the packages are installed
# with apt-get when missing, about a minute; rendering takes 20-40 s a set on 2 cores). Seed 0 makes it
# deterministic: the same packages give byte-identical files, so the recipe tables are reproducible from
# this repository alone. With --from, an existing copy of a set (a folder holding train/, heldout/ and
# metadata.csv) is linked into place and checked instead.
set -euo pipefail
NAME=${1:?usage: prepare.sh notes|digits|drums|loops DATA_DIR [--from EXISTING_SET_DIR]}
DATA=${2:?usage: prepare.sh notes|digits|drums|loops DATA_DIR [--from EXISTING_SET_DIR]}
case $NAME in notes|digits|drums|loops) ;; *) echo "unknown set $NAME (notes, digits, drums, loops)" >&2; exit 2 ;; esac
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$DATA"
if [ "${3:-}" = --from ]; then
  SRC=$(cd "${4:?--from needs a folder}" && pwd)
  ln -sfn "$SRC" "$DATA/$NAME"
else
  PACKAGES=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small espeak-ng flite
            hydrogen-data hydrogen-drumkits)
  missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
  fi
  python3 "$HERE/make_sets.py" "$DATA" --sets "$NAME" --seed 0
fi
for part in train heldout metadata.csv; do
  [ -e "$DATA/$NAME/$part" ] || { echo "$DATA/$NAME: no $part" >&2; exit 1; }
done
echo "$DATA/$NAME: $(find -L "$DATA/$NAME/train" -name '*.wav' | wc -l) training clips," \
     "$(find -L "$DATA/$NAME/heldout" -name '*.wav' | wc -l) held-out clips"
