"""MLflow tracking server: pure builders of the desired children (and later the reconciler)."""
