"""The training loop kit and the trainers built on it (diffusion UNet, vocoder), DDP and TensorBoard."""
