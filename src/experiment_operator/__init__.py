"""experiment-operator: Kubernetes operator for MLflow tracking servers and other ML tools."""
