"""Hierarchical BD3-LM: block diffusion with a Question -> Plan -> Execution layout on GSM8K."""

__version__ = "0.1.0"
