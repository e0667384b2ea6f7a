"""Metrics, baselines, calibration and reports."""
