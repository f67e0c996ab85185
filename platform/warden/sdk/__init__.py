"""The SDK used by people and by jobs inside sandboxes: governed reads into polars.

It depends only on httpx and polars, so the ML image can carry it without the control plane.
"""

from warden.sdk.client import Client, WardenAPIError

__all__ = ["Client", "WardenAPIError"]
