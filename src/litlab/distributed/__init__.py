"""Multi-process and multi-node runs under Hydra: one run directory, shared settings, clean exits."""
