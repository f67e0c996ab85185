"""Catalog: datasets, their versions (content digests), columns and classes."""
