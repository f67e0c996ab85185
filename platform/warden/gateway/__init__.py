"""Gateway: governed reads (decide, plan with polars, audit, stream Arrow IPC)."""
