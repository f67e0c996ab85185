"""Audit: durable, hash-chained events, exported through OpenTelemetry."""
