"""hti-bench: the benchmark suite for Hyperparameter Trajectory Inference.

Importing the package is cheap; torch, POT and Lightning load when first used.
"""

__all__ = ["__version__"]

__version__ = "0.2.0"
