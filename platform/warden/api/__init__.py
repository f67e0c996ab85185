"""The web API (FastAPI): one router per domain, mounted under /v1."""
