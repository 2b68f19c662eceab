"""tiercut: split deep neural networks across end devices, edge and cloud servers."""

__version__ = "0.1.0"
