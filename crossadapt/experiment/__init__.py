"""Experiment protocol: time-ordered splits, the teacher, the offline methods and their baselines."""
