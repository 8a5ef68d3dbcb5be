"""Plumbing shared by every subpackage: input validation, atomic I/O, FLOP counting, command lines, experiment directories."""
