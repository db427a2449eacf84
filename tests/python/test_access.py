"""Access tokens with python-socketio (docs/protocol.md "Access tokens"): every bad token is
refused at the handshake with CONNECT_ERROR `unauthorized`; a good one connects and its claims
bound join_room (forbidden room, then sub; token_expired). Tokens are made with the standard
library, as a Python backend without a JWT package would make them.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
import socketio

from conftest import BIN, running

SECRET = "py-secret-0123456789"
TIMEOUT_S = 5


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret=SECRET, alg="HS256", **claims):
    """A JWT signed with HMAC (HS256/HS512), or unsigned for alg none."""
    claims.setdefault("exp", int(time.time()) + 3600)
    claims = {k: v for k, v in claims.items() if v is not None}
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(alg)
    sig = b64url(hmac.new(secret.encode(), f"{head}.{body}".encode(), digest).digest()) if digest else ""
    return f"{head}.{body}.{sig}"


BAD = {
    "garbage": "garbage",
    "wrong signature": token(secret="another-secret"),
    "alg none": token(alg="none"),
    "alg HS512": token(alg="HS512"),
    "expired": token(exp=int(time.time()) - 1),
    "nbf in the future": token(nbf=int(time.time()) + 60),
    "no exp": token(exp=None),
}


@pytest.fixture(scope="module")
def url():
    with running([BIN, "--host", "127.0.0.1", "--port", "0", "--auth-secret", SECRET], env={"PORT": "0"}) as server:
        yield server.url


async def refused(url, auth):
    """Connects with `auth`; returns the connect_error data, or fails if accepted."""
    sio = socketio.AsyncClient(reconnection=False)
    errors = asyncio.Queue()

    @sio.event
    async def connect_error(data):
        await errors.put(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=TIMEOUT_S)
    data = await asyncio.wait_for(errors.get(), TIMEOUT_S)
    assert not sio.connected
    await sio.disconnect()
    return data


class Peer:
    def __init__(self):
        self.sio = socketio.AsyncClient(reconnection=False)

    async def connect(self, url, tok):
        await self.sio.connect(url, auth={"token": tok}, transports=["websocket"], wait_timeout=TIMEOUT_S)
        return self

    async def join(self, room, peer_id):
        return await self.sio.call("join_room", {"room_name": room, "peer_id": peer_id, "username": peer_id}, timeout=TIMEOUT_S)


@pytest.mark.asyncio
async def test_no_token_is_refused(url):
    assert (await refused(url, None)) == {"message": "unauthorized"}
    assert (await refused(url, {})) == {"message": "unauthorized"}


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(BAD))
async def test_bad_tokens_are_refused(url, name):
    assert (await refused(url, {"token": BAD[name]})) == {"message": "unauthorized"}


@pytest.mark.asyncio
async def test_a_good_token_joins_its_room_and_is_bound_by_room_then_sub(url):
    room = f"py-{uuid.uuid4().hex[:8]}"
    p = await Peer().connect(url, token(room=room, sub="me"))
    try:
        err = await p.join("elsewhere", "other")
        assert err == {"error": "Token does not allow room elsewhere", "code": "forbidden", "room_name": "elsewhere"}
        err = await p.join(room, "other")
        assert err == {"error": "Token does not allow peer_id other", "code": "forbidden", "room_name": room}
        ok = await p.join(room, "me")
        assert ok["room_name"] == room
        assert [x["peer_id"] for x in ok["peers"]] == ["me"]
    finally:
        await p.sio.disconnect()


@pytest.mark.asyncio
async def test_a_join_after_exp_is_token_expired(url):
    exp = int(time.time()) + 2
    p = await Peer().connect(url, token(exp=exp))
    try:
        await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)  # the rule is about the clock
        err = await p.join("late", "p")
        assert err == {"error": "Token expired", "code": "token_expired", "room_name": "late"}
    finally:
        await p.sio.disconnect()
