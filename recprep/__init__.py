"""recprep: elastic preprocessing of recommendation-model training data."""

__version__ = "0.1.0"
