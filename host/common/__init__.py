"""Leaf helpers every part may use: ids, files, JSON conversion, units, the clock."""
