"""recipes/make_sets.py, the recipes' data builder: the parts that need no Debian package (splits, MIDI
bytes, clip shaping). The rendering itself runs in recipes/prepare.sh, not in the tests."""

import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location("make_sets", Path(__file__).resolve().parents[1] / "recipes" / "make_sets.py")
make_sets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_sets)


def test_split_keeps_groups_whole_and_holds_out_about_15_percent_per_stratum():
    items = [{"label": str(d), "group": f"spk{s}", "stratum": "espeak" if s < 40 else "flite"}
             for s in range(60) for d in range(10)]
    sides = make_sets.split(items, seed=0, name="digits")
    by_group = {}
    for it, side in zip(items, sides):
        by_group.setdefault(it["group"], set()).add(side)
    assert all(len(s) == 1 for s in by_group.values())  # a speaker never straddles the split
    held = {g for g, s in by_group.items() if s == {"heldout"}}
    assert len([g for g in held if int(g[3:]) < 40]) == 6 and len([g for g in held if int(g[3:]) >= 40]) == 3
    assert make_sets.split(items, seed=0, name="digits") == sides and make_sets.split(items, seed=1, name="digits") != sides


def test_midi_file_bytes(tmp_path):
    path = tmp_path / "x.mid"
    make_sets.midi_file(path, [(0.0, 0.5, 0, 60, 100), (1.5, 0.75, 0, 64, 80)], program=24)
    b = path.read_bytes()
    assert b[:4] == b"MThd" and b[8:14] == bytes([0, 0, 0, 1, 1, 0xE0]) and b[14:18] == b"MTrk"
    track = b[22:]
    assert len(track) == int.from_bytes(b[18:22], "big")
    assert track[:3] == bytes([0, 0xC0, 24])  # program change first
    assert bytes([0x90, 60, 100]) in track and bytes([0x80, 64, 0]) in track
    # note-on of the second note 1.5 s = 1440 ticks after the start, 960 ticks after the first note-off
    assert bytes([0x87, 0x40, 0x90, 64, 80]) in track  # delta 960 as a variable-length quantity
    assert track.endswith(bytes([0x87, 0x40, 0xFF, 0x2F, 0]))  # 1 s of tail, then end of track


def test_fit_makes_one_second_at_a_seeded_level():
    rng = np.random.default_rng(0)
    long, short = rng.standard_normal(30000).astype(np.float32), rng.standard_normal(4000).astype(np.float32)
    for x in (long, short):
        y = make_sets.fit(x, make_sets.rng_for(0, "k"), (-6.0, -6.0))
        assert y.shape == (16000,) and abs(20 * np.log10(np.abs(y).max()) + 6.0) < 1e-4
    assert make_sets.fit(short)[4000:].max() == 0.0  # padded with silence
    assert make_sets.fit(long)[-1] == 0.0  # faded out at the cut
    assert make_sets.rng_for(3, "a", 1).random() == make_sets.rng_for(3, "a", 1).random()


def test_midi_programs_and_pans_per_channel(tmp_path):
    path = tmp_path / "y.mid"
    make_sets.midi_file(path, [(0.0, 0.5, 0, 40, 100), (0.0, 0.5, 9, 36, 90)], programs={0: 33, 9: 8}, pans={0: 20})
    track = path.read_bytes()[22:]
    assert track[:9] == bytes([0, 0xC0, 33, 0, 0xC9, 8, 0, 0xB0, 10])[:9] and track[9] == 20  # programs, then pan


def test_loop_scores_are_seeded_and_in_range():
    a, b = make_sets.loop_items(0, 20), make_sets.loop_items(0, 20)
    assert [x["notes"] for x in a] == [x["notes"] for x in b]
    assert [x["notes"] for x in make_sets.loop_items(1, 20)] != [x["notes"] for x in a]
    for it in a:
        assert 4.0 <= it["seconds"] <= 8.0 and it["bars"] in (2, 4) and 80 <= it["tempo"] <= 140
        assert max(start + length for start, length, *_ in it["notes"]) <= it["seconds"] + 1e-4
        assert it["instruments"].startswith("drums+bass")
        assert all(0 <= key < 128 and 0 < vel < 128 for *_, key, vel in it["notes"])
        assert {ch for _, _, ch, _, _ in it["notes"]} <= set(it["programs_by_channel"])
    assert {it["mode"] for it in a} == {"major", "minor"}
