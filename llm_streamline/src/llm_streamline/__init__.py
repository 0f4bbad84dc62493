"""LLM-Streamline: replace the most redundant contiguous block of layers by one lightweight network."""

__version__ = "0.1.0"
