"""Transports to the desk unit: one interface (base.py), one module per kind (serial, HID)."""
