"""xtra: model-based cross-task transfer (XTRA, Xu, Hansen et al., ICLR 2023) on EfficientZero."""

__version__ = "0.1.0"
