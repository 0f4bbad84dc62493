"""LLM-TRM: hidden-state compressor (phase 1), tiny recursive model (phase 2), GRPO (phase 3)."""

__version__ = "0.1.0"
