"""Production inference: the full batch and the daily diff (Delta Change Data Feed) over the lakehouse."""
