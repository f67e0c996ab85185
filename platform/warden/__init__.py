"""Warden: governed data access and sandboxes for ML teams."""

__version__ = "0.1.0"
