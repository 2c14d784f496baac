"""nemo-r1."""
