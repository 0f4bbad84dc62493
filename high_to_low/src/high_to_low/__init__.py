"""High-to-low residual connections: higher layers of earlier tokens feed lower layers of later tokens (TurboConn), on GSM8K, multi-step arithmetic and parity."""

__version__ = "0.1.0"
