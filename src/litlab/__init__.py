"""litlab: train, test, compress and export PyTorch classifiers from one Hydra command."""

__version__ = "0.1.0"
