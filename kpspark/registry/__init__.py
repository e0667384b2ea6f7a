"""MLflow tracking and registry helpers (runs, model registration, aliases)."""
