"""Tests of the example scripts in examples/nat and of the demo (scripts/demo.py)."""
