"""The Gaussian noising chain and everything that walks it: schedule, denoiser, samplers, edits, consistency."""
