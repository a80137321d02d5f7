"""The networks: the UNet, its conditioning signals, LoRA adapters, and networks started from a trained run.

Nothing here knows about audio files or run folders beyond reading a checkpoint."""
