"""Experiments: shadow, A/B on simulated users, a pre-registered decision, cutover, rollback."""
