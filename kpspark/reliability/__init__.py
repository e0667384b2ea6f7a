"""Reliability tooling: hostile-input corpora and fault injectors used by the reliability suite."""
