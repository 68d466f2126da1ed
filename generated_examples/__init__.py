"""Example NNX models and their committed, nnxgen-generated Linen wrappers."""
