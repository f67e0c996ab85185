"""Governed ML jobs: specs, the queue (rows of the job table), workers, logs and artifacts."""
