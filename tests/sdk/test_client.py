"""The SDK's read options: a misspelt one is refused before anything is sent (it would
otherwise be dropped, and the read ask for more than meant: every column, no limit)."""

from __future__ import annotations

import pytest

from warden.sdk import Client


@pytest.fixture
def client() -> Client:
    # Nothing listens on port 9 (discard): a request that went out would fail with ConnectError.
    return Client(url="http://127.0.0.1:9", token="wdn_unused")


def test_a_misspelt_read_option_is_refused_before_anything_is_sent(client: Client) -> None:
    with pytest.raises(TypeError, match="'colums'"):
        client.read("pins", purpose="training", colums=["pin_id"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'limt'"):
        client.read_with_info("pins", purpose="training", limt=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'shards'"):
        next(client.iter_batches("pins", purpose="training", shards=(0, 2)))  # type: ignore[call-arg]
