"""experiments/main_job_levers.py: its variants are valid configs, the clips of a conditional run are split over the
labels as documented, and the memorizer rows draw training clips of the right labels in those counts."""

import importlib.util
from pathlib import Path

import pytest
import tomllib

from audiodiff.config import Config
from audiodiff.data.labels import CLIP_LABEL_COLUMN, file_labels
from audiodiff.presets import preset

spec = importlib.util.spec_from_file_location(
    "main_job_levers", Path(__file__).resolve().parents[1] / "main_job_levers.py")
levers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(levers)


@pytest.mark.parametrize("name", sorted(levers.VARIANTS))
def test_every_variant_applies_to_the_tiny_preset(name):
    conditional, toml = levers.VARIANTS[name]
    config = Config.from_dict(tomllib.loads(toml), preset("tiny"))
    assert config.preset == "tiny"
    if name == "labels_4levels":
        assert config.unet.channel_mult == (1, 2, 2, 4) and config.unet.attention_levels == (2, 3)
    if name == "labels_min_snr5":
        assert conditional and config.train.min_snr_gamma == 5.0
    if name == "labels_freq_attn":
        assert conditional and config.unet.freq_attention_levels == (1,)
    if name == "labels_dropout":
        assert conditional and config.unet.dropout == 0.1
    if name == "labels_batch8":
        assert conditional and config.train.batch_size == 8
    if name == "labels_row_position":
        assert conditional and config.unet.row_position
    if name == "labels_narrow_up":
        assert conditional and config.unet.narrow_upsample and not preset("tiny").unet.narrow_upsample


def test_step_times_table_names_each_variant(capsys):
    """--step-times builds and times each variant's training step (a conditional one with labels) and prints
    one row per variant, the first at 1.00x."""
    levers.step_times(["baseline", "labels_freq_attn"], None, rounds=1, steps=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| baseline")
            or line.startswith("| labels_freq_attn")]
    assert len(rows) == 2 and rows[0].endswith("| 1.00x |")
    params = [float(r.split("|")[2].split()[0]) for r in rows]
    assert params[1] > params[0]  # the frequency attention's layers and the label embedding were built


def test_split_even_and_by_largest_remainders():
    assert levers._split(66, [1] * 11) == [6] * 11
    assert levers._split(46, [1] * 11) == [5] * 11  # equal weights: ceil(total / n) each, as the script always did
    assert levers._split(7, [4, 2, 6]) == [2, 1, 4]  # exact 2.33, 1.17, 3.5: the largest remainder (3.5) gets the 7th
    assert sum(levers._split(64, [13, 1, 50, 7])) == 64


def _tiny_folder(root: Path) -> Path:
    data = root / "train"
    data.mkdir()
    rows = ["path,family"]
    for family, n in (("bass", 4), ("flute", 2), ("organ", 6)):
        for i in range(n):
            (data / f"{family}_{i}.wav").write_bytes(b"")  # never read: the memorizer only links files
            rows.append(f"{family}_{i}.wav,{family}")
    (data / "metadata.csv").write_text("\n".join(rows) + "\n")
    return data


@pytest.mark.parametrize("by_data, counts", [(False, [2, 2, 2]), (True, [2, 1, 3])])
def test_memorizer_draws_training_clips_per_label(tmp_path, by_data, counts):
    data = _tiny_folder(tmp_path)
    out = tmp_path / "draw0"
    levers.memorizer(data, out, 6, "family", 0, by_data)
    links = sorted(out.glob("*.wav"))
    families = ["bass", "flute", "organ"]
    for k, family in enumerate(families):
        mine = [p for p in links if p.name.startswith(f"{k:02d}_")]
        assert len(mine) == counts[k]
        targets = {p.resolve().name for p in mine}
        assert len(targets) == len(mine) and all(t.startswith(family + "_") for t in targets)
    # each link's family is recorded as `audiodiff generate` records a clip's, for the class accuracy
    names, ids = file_labels(out, [p.name for p in links], CLIP_LABEL_COLUMN)
    assert [names[i] for i in ids] == [p.resolve().name.split("_")[0] for p in links]
    again = tmp_path / "again"
    levers.memorizer(data, again, 6, "family", 0, by_data)
    assert [p.resolve() for p in sorted(again.glob("*.wav"))] == [p.resolve() for p in links]  # seeded by the draw
