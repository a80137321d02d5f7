"""Load a run, generate or edit, return waveforms: the pipeline facade, representations, the gallery."""
