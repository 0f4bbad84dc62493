"""The README's ``src/`` layout (``from src.superrelora_model import SuperReLoRaModel`` from the project root).

These are thin re-exports; the implementation is the installed package ``superrelora`` (src/superrelora/).
"""
