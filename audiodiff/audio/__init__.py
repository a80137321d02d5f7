"""Audio in and out: file I/O, the one mel transform, spectrogram plots and signal distances."""
