"""A REST join whose body is over the limit is answered 413 in full, even while the client is
still sending (docs/protocol.md "Abuse limits"): the server drains what still comes before it
closes, so an asyncio HTTP client (aiohttp) gets the 413 and never a connection reset.
Many runs each, because a reset depends on how the close races the client's writes.
"""

import uuid

import aiohttp
import pytest

RUNS = 20
PIECE = 8 * 1024


def body_pieces(size):
    async def gen():
        sent = 0
        while sent < size:
            n = min(PIECE, size - sent)
            yield b" " * n
            sent += n

    return gen()


@pytest.mark.parametrize(
    "what,size,chunked",
    [
        ("chunked 64 KiB + 8 KiB", 72 * 1024, True),
        ("chunked 128 KiB", 128 * 1024, True),
        ("chunked 1 MiB", 1 << 20, True),
        ("Content-Length 1 MiB", 1 << 20, False),
    ],
)
async def test_an_oversized_join_body_gets_its_413_every_time(server_url, what, size, chunked):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        for run in range(RUNS):
            url = f"{server_url}/api/webrtc/rooms/big-{uuid.uuid4().hex[:8]}/join"
            data = body_pieces(size) if chunked else b" " * size
            async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as res:
                assert res.status == 413, f"{what}, run {run}"
                body = await res.json()
                assert body["code"] == "payload_too_large", f"{what}, run {run}"
