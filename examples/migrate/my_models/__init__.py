"""Your own model classes (the walk-through's student lives in ``net.py``)."""
