"""Softphone adapters: one interface (base.py), one module per softphone dialect."""
