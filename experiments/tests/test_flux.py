"""experiments/flux.py: the flux of one jump, and its ratio at the jump and away from it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("flux", Path(__file__).resolve().parents[1] / "flux.py")
flux_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(flux_module)


def test_flux_of_one_jump_and_its_ratio():
    mel = np.zeros((2, 4, 20))
    mel[..., 10:] = 1.0  # one jump between frames 9 and 10
    flux = flux_module.spectral_flux(mel)
    assert flux.shape == (19,) and flux[9] == 1.0 and flux.sum() == 1.0
    flux = flux + 0.01
    assert flux_module.flux_ratios(flux, [10])[0] == pytest.approx(101.0)
    assert flux_module.flux_ratios(flux, [15])[0] == pytest.approx(1.0)
