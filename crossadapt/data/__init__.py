"""Data: synthetic logs, raw converters and array helpers (see the layer notes in crossadapt/__init__.py)."""
