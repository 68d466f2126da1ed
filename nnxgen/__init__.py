"""nnxgen: static, typed Linen wrappers for Flax NNX modules."""

__version__ = "0.1.0"
