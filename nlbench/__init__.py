"""nlbench: a Lightning reproducibility suite for softmax vs scaling in non-local blocks (arXiv 2207.13423)."""

__version__ = "0.1.0"
