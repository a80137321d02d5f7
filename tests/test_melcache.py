"""The sharded mel cache: incremental updates, damaged shards, worker equality, failures while writing."""

import errno
import io
import json
import os
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.mel import MelSpectrogram
from audiodiff.data import prepare as data_module
from audiodiff.data.melcache import INDEX, ShardWriter
from audiodiff.data.prepare import load_mels

from .conftest import SR, tone

SMALL_SHARDS = 3000  # bytes: the six test files fill several shards


def load(audio_dir, tiny_config, cache, **kw):
    return load_mels(audio_dir, MelSpectrogram(tiny_config.mel), 16, cache, progress=False,
                     shard_bytes=SMALL_SHARDS, **kw)


def same_mels(a, b) -> bool:
    return a.files == b.files and all(torch.equal(a.file_mel(i), b.file_mel(i)) for i in range(len(a)))


def store_dir(cache):
    return next(cache.glob("mels-*"))


def test_shards_read_like_memory(tmp_path, audio_dir, tiny_config):
    memory, _ = load(audio_dir, tiny_config, None)
    sharded, report = load(audio_dir, tiny_config, tmp_path / "cache")
    assert len(list(store_dir(tmp_path / "cache").glob("shard-*.bin"))) >= 3 and report.prepared == 6
    assert all(isinstance(c, np.memmap) for c in sharded.chunks)
    assert same_mels(memory, sharded)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(memory.sample(8, g1), sharded.sample(8, g2))
    assert torch.equal(memory.subset([4, 1]).file_mel(1), memory.file_mel(1))


def test_adding_removing_and_changing_files_prepares_only_those(tmp_path, audio_dir, tiny_config):
    cache = tmp_path / "cache"
    load(audio_dir, tiny_config, cache)
    sf.write(audio_dir / "seven.wav", tone(990, 0.4), SR)
    data, report = load(audio_dir, tiny_config, cache)
    assert (report.cached, report.prepared, len(data)) == (6, 1, 7)
    assert "6 files cached, 1 prepared now" in report.summary()
    (audio_dir / "one.wav").unlink()
    sf.write(audio_dir / "two.flac", tone(100, 0.4, sr=16000), 16000)  # same name, new content
    data, report = load(audio_dir, tiny_config, cache)
    assert (report.cached, report.prepared, len(data)) == (5, 1, 6) and "one.wav" not in data.files
    assert same_mels(data, load(audio_dir, tiny_config, None)[0])
    again, report = load(audio_dir, tiny_config, cache)
    assert report.from_cache and report.summary().endswith("[mel cache]") and same_mels(again, data)
    index = json.loads((store_dir(cache) / INDEX).read_text())
    on_disk = {p.name for p in store_dir(cache).glob("shard-*")}
    assert on_disk == set(index["shards"]) == {e["shard"] for e in index["entries"].values()}  # no dead shard kept


def test_skipped_files_are_remembered_with_their_reason(tmp_path, audio_dir, tiny_config):
    (audio_dir / "fake.flac").write_text("definitely not flac")
    sf.write(audio_dir / "silent.wav", np.zeros(4000, dtype=np.float32), SR)
    _, first = load(audio_dir, tiny_config, tmp_path / "cache")
    _, again = load(audio_dir, tiny_config, tmp_path / "cache")
    assert again.prepared == 0 and sorted(again.skipped) == sorted(first.skipped) and len(again.skipped) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_shard_is_rebuilt_alone(tmp_path, audio_dir, tiny_config, damage):
    cache = tmp_path / "cache"
    load(audio_dir, tiny_config, cache)
    index = json.loads((store_dir(cache) / INDEX).read_text())
    victim = sorted(index["shards"])[1]
    in_victim = sum(e.get("shard") == victim for e in index["entries"].values())
    path = store_dir(cache) / victim
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x40
        written = path.stat().st_mtime_ns
        path.write_bytes(bytes(raw))
        os.utime(path, ns=(written + 10**9, written + 10**9))  # a write a second later (timestamps can be coarse)
    elif damage == "truncate":
        path.write_bytes(bytes(raw[:-10]))
    else:
        path.unlink()
    again, report = load(audio_dir, tiny_config, cache)
    assert report.prepared == in_victim > 0 and report.cached == 6 - in_victim
    assert any("damaged shard" in n and victim in n for n in report.notes)
    assert same_mels(again, load(audio_dir, tiny_config, None)[0])


def test_checksums_are_computed_again_only_for_shards_whose_mtime_changed(tmp_path, audio_dir, tiny_config,
                                                                          monkeypatch):
    from audiodiff.data import melcache
    cache = tmp_path / "cache"
    first, _ = load(audio_dir, tiny_config, cache)
    hashed = []
    real = melcache._sha256
    monkeypatch.setattr(melcache, "_sha256", lambda path: hashed.append(path.name) or real(path))
    load(audio_dir, tiny_config, cache)
    assert hashed == []  # unchanged shards: sizes checked, contents not read
    shards = sorted(p for p in store_dir(cache).glob("shard-*.bin"))
    later = shards[0].stat().st_mtime_ns + 10**9
    os.utime(shards[0], ns=(later, later))  # e.g. a cache copied without keeping times: same bytes, new mtime
    again, report = load(audio_dir, tiny_config, cache)
    assert hashed == [shards[0].name] and report.prepared == 0 and same_mels(again, first)
    load(audio_dir, tiny_config, cache)
    assert hashed == [shards[0].name]  # its new mtime was recorded once verified


def test_workers_give_the_same_result_as_one(tmp_path, audio_dir, tiny_config, monkeypatch):
    (audio_dir / "fake.flac").write_text("definitely not flac")
    pools = []

    class Pool(data_module.ProcessPoolExecutor):
        def __init__(self, n, *a, **kw):
            pools.append(n)
            super().__init__(n, *a, **kw)
    monkeypatch.setattr(data_module, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(data_module, "FILES_PER_WORKER", 1)  # a pool even for seven files
    one, r1 = load(audio_dir, tiny_config, None, workers=1)
    assert pools == []
    two, r2 = load(audio_dir, tiny_config, tmp_path / "cache", workers=2)  # workers write shards
    in_memory, r3 = load(audio_dir, tiny_config, None, workers=2)  # workers return mels
    assert pools == [2, 2] and same_mels(one, two) and same_mels(one, in_memory)
    assert r1.skipped == r2.skipped == r3.skipped and r2.prepared == 7


def test_a_full_disk_keeps_what_was_cached(tmp_path, audio_dir, tiny_config, monkeypatch):
    cache = tmp_path / "cache"
    before, _ = load(audio_dir, tiny_config, cache)
    sf.write(audio_dir / "seven.wav", tone(990, 0.4), SR)

    def full(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(ShardWriter, "close", full)
    with pytest.raises(OSError, match="cannot extend the mel cache .No space left on device.; the files cached so far"):
        load(audio_dir, tiny_config, cache)
    monkeypatch.undo()
    (audio_dir / "seven.wav").unlink()
    after, report = load(audio_dir, tiny_config, cache)
    assert report.from_cache and same_mels(after, before)


def test_a_file_changing_during_preparation_is_an_error(tmp_path, audio_dir, tiny_config, monkeypatch):
    real = data_module._file_mel

    def and_rewrite(source, mel, skip_silent):
        out = real(source, mel, skip_silent)
        if source[1].endswith("one.wav"):
            sf.write(source[1], tone(100, 0.9), SR)
        return out
    monkeypatch.setattr(data_module, "_file_mel", and_rewrite)
    with pytest.raises(ValueError, match="one.wav: changed while its mel was being prepared"):
        load(audio_dir, tiny_config, tmp_path / "cache")


def test_a_reader_refuses_a_cache_that_lacks_files(tmp_path, audio_dir, tiny_config):
    load(audio_dir, tiny_config, tmp_path / "cache")
    sf.write(audio_dir / "seven.wav", tone(990, 0.4), SR)
    with pytest.raises(ValueError, match="the mel cache lacks seven.wav"):
        load(audio_dir, tiny_config, tmp_path / "cache", prepare=False)
    data, report = load(audio_dir, tiny_config, tmp_path / "cache")
    assert report.prepared == 1 and len(data) == 7


def test_the_old_single_file_cache_is_replaced(tmp_path, audio_dir, tiny_config):
    old = tmp_path / "cache" / "mels-0123456789abcdef.safetensors"
    old.parent.mkdir()
    old.write_bytes(b"an old cache")
    data, report = load(audio_dir, tiny_config, tmp_path / "cache")
    assert not old.exists() and len(data) == 6 and "old single-file format" in report.notes[0]


def write_tar(path, members: dict):
    """An uncompressed tar of {member name: bytes}."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def wav_bytes(wav, sr=SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_audio_inside_tar_shards_is_read_in_place(tmp_path, audio_dir, tiny_config):
    plain = tmp_path / "plain"
    plain.mkdir()
    clips = {f"s{i}/clip.wav": tone(200 + 100 * i, 0.5) for i in range(3)}
    for name, wav in clips.items():
        (plain / name).parent.mkdir()
        sf.write(plain / name, wav, SR, subtype="PCM_16")
    shards = tmp_path / "shards"
    shards.mkdir()
    write_tar(shards / "000.tar", {**{n: wav_bytes(w) for n, w in clips.items()}, "s0/clip.json": b"{}"})
    write_tar(shards / "001.tar", {"bad.flac": b"not flac"})
    (shards / "broken.tar").write_bytes(b"not a tar at all" * 100)
    data, report = load(shards, tiny_config, tmp_path / "cache")
    assert data.files == [f"000.tar/{n}" for n in clips]  # the .json member is not audio
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in report.skipped}
    assert set(reasons) == {"bad.flac", "broken.tar"} and "cannot read audio" in reasons["bad.flac"]
    reference, _ = load(plain, tiny_config, None)
    assert all(torch.equal(data.file_mel(i), reference.file_mel(i)) for i in range(3))

    write_tar(shards / "002.tar", {"new.wav": wav_bytes(tone(700, 0.5))})
    more, report = load(shards, tiny_config, tmp_path / "cache")
    assert report.prepared == 1 and len(more) == 4  # only the new shard's member
    os.utime(shards / "000.tar", ns=(1, 1))  # a rewritten tar: its members are prepared again
    _, report = load(shards, tiny_config, tmp_path / "cache")
    assert report.prepared == 3
