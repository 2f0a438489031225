"""dfl: DeepFaceLab's face-swapping workflow in Python and PyTorch."""

__version__ = "0.1.0"
