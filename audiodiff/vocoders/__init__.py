"""mel -> waveform behind one interface: Griffin-Lim, PGHI, the neural vocoder, and the registry of kinds."""
