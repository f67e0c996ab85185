"""The model registry: what each finished job produced, and the lineage behind it."""
