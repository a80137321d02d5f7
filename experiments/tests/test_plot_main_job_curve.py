"""experiments/plot_main_job_curve.py: reads main_job_curve.sh's OUT folders in step order, converts steps to
minutes, and writes the plot; a folder without scores is a clear error."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "plot_main_job_curve", Path(__file__).resolve().parents[1] / "plot_main_job_curve.py")
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


def _scores(folder: Path, step: int, fd: float, accuracy: float | None) -> None:
    classes = {"is": 7.0, **({"accuracy": accuracy} if accuracy is not None else {})}
    emb = {"generated": {"fd": fd, "fd_ci": [fd - 5, fd + 5]}, "floor": {"fd": 6.5, "fd_ci": [-1.8, 14.8]},
           "generated_classes": classes}
    (folder / f"at{step}").mkdir(parents=True)
    (folder / f"at{step}" / "scores.json").write_text(json.dumps({"embedder": emb}))


def test_curve_in_step_order_and_plot_written(tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for step, fd, acc in ((1000, 16.3, 0.74), (500, 20.0, 0.65), (2250, 10.6, 0.85)):
        _scores(a, step, fd, acc)
    _scores(b, 1500, 17.1, None)  # scored before class accuracy was recorded: no accuracy point, still an FD point
    _scores(tmp_path / "wide", 800, 15.7, 0.76)
    assert [s for s, _ in plot.points(a)] == [500, 1000, 2250]  # numeric order, not the names' (1000 < 500)
    out = tmp_path / "curve.png"
    monkeypatch.setattr(sys, "argv", ["plot", f"seed 0={a}", f"seed 1={b}", f"32 ch={tmp_path / 'wide'}@2.4",
                                      "--out", str(out), "--seconds-per-step", "1.2", "--real-accuracy", "0.94"])
    plot.main()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split("\t") == ["seed 0", "500", "10.0 min", "embedder FD 20.0", "accuracy 65%"]
    assert printed[3].split("\t")[:3] == ["seed 1", "1500", "30.0 min"] and printed[3].endswith("accuracy nan%")
    assert printed[4].split("\t")[:3] == ["32 ch", "800", "32.0 min"]  # its own seconds per step
    assert printed[-1].startswith("command: python plot 'seed 0=")  # a label with a space stays one argument
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_folder_without_scores_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no at<STEP>/scores.json"):
        plot.points(tmp_path)


@pytest.mark.parametrize("spec, match", [("a", "expected LABEL=FOLDER"), ("=dir", "expected LABEL=FOLDER"),
                                         ("a=dir@fast", "not a number"), ("a=dir@0", "must be > 0")])
def test_bad_run_spec_is_an_error(spec, match):
    with pytest.raises(SystemExit, match=match):
        plot.run_spec(spec, 1.0)


def test_run_spec_keeps_an_at_sign_in_the_folder_name():
    assert plot.run_spec("a=runs/x@y@2.5", 1.0) == ("a", Path("runs/x@y"), 2.5)
    assert plot.run_spec("a=runs/x", 1.2) == ("a", Path("runs/x"), 1.2)
