"""SuperReLoRA: LoRA with periodic partial (alpha) merging into the base weights, built on peft, with a correct evaluation."""

__version__ = "0.1.0"
