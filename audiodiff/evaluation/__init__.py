"""Scores of generated audio and of vocoders: features, Frechet/kernel distances with floors, classifiers."""
