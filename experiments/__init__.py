"""Experiments: ``python -m experiments.<name> [--out DIR] [--seeds N] [--quick] [--help]``."""
