"""`feredge bench`: latency, accuracy and energy per artifact (measure, telemetry, environment, report)."""
