"""Cluster mode with python-socketio: three signalroom nodes on one private Redis share a room.

Clients of the original guide's kind (python-socketio AsyncClient, the guide's events) on
different nodes meet in one room, see the same lists in version order, relay `signal` to each
other across nodes, and see a peer of another node leave; every node lists the room alike.

The nodes are the server binary given by env SIGNALROOM_CLUSTER_BIN (`cargo xtask
test` sets it); without it this module is skipped. Redis is SIGNALROOM_REDIS_BIN (or
`redis-server` on PATH), started on a free port with no persistence: never the system service.
"""

import asyncio
import json
import os
import urllib.request
import uuid

import pytest
import socketio

from conftest import cluster

CLUSTER_BIN = os.environ.get("SIGNALROOM_CLUSTER_BIN")
TIMEOUT_S = 10

pytestmark = pytest.mark.skipif(
    not CLUSTER_BIN, reason="SIGNALROOM_CLUSTER_BIN (the server binary for the nodes) is not set"
)


@pytest.fixture(scope="module")
def nodes():
    """The URLs of three nodes sharing one private Redis."""
    with cluster(3, prefix="py") as running_nodes:
        yield [n.url for n in running_nodes]


class Peer:
    """A python-socketio client on one node: its peer lists and signals, awaitable."""

    def __init__(self, url):
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.lists = asyncio.Queue()
        self.signals = asyncio.Queue()

        @self.sio.event
        async def peer_list_updated(data):
            await self.lists.put(data)

        @self.sio.event
        async def signal(data):
            await self.signals.put(data)

    async def connect(self):
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=TIMEOUT_S)
        return self

    async def join(self, room, peer_id):
        return await self.sio.call("join_room", {"room_name": room, "peer_id": peer_id, "username": peer_id.upper()},
                                   timeout=TIMEOUT_S)

    async def list_where(self, pred):
        """The next peer list for which `pred(peer_ids)` holds; earlier ones are consumed."""
        while True:
            data = await asyncio.wait_for(self.lists.get(), TIMEOUT_S)
            if pred([p["peer_id"] for p in data["peers"]]):
                return data


def listing(url, room):
    with urllib.request.urlopen(f"{url}/api/webrtc/rooms/{room}", timeout=TIMEOUT_S) as res:
        return json.load(res)


async def test_guide_clients_on_three_nodes_meet_relay_and_leave(nodes):
    room = f"py-cluster-{uuid.uuid4().hex[:8]}"
    a, b, c = [await Peer(url).connect() for url in nodes]
    try:
        joined = [await a.join(room, "a"), await b.join(room, "b"), await c.join(room, "c")]
        # One room across the nodes: each join is the next version, and each answer lists
        # everyone so far, in join order.
        assert [j["version"] for j in joined] == [1, 2, 3]
        assert [[p["peer_id"] for p in j["peers"]] for j in joined] == [["a"], ["a", "b"], ["a", "b", "c"]]
        # a, on node 1, hears both later joins from the other nodes, in version order.
        first = await a.list_where(lambda ids: ids == ["a", "b"])
        second = await a.list_where(lambda ids: ids == ["a", "b", "c"])
        assert (first["version"], second["version"]) == (2, 3)
        await b.list_where(lambda ids: ids == ["a", "b", "c"])

        # signal from node 1 to node 3, acknowledged to the sender.
        assert await a.sio.call("signal", {"to": "c", "data": {"sdp": "offer"}}, timeout=TIMEOUT_S) == {"to": "c"}
        got = await asyncio.wait_for(c.signals.get(), TIMEOUT_S)
        assert got == {"room_name": room, "from": "a", "data": {"sdp": "offer"}}
        refused = await a.sio.call("signal", {"to": "nobody", "data": 1}, timeout=TIMEOUT_S)
        assert refused["code"] == "peer_not_found"

        # Every node lists the room alike.
        listings = [listing(url, room) for url in nodes]
        assert listings[0] == listings[1] == listings[2]
        assert [p["peer_id"] for p in listings[0]["peers"]] == ["a", "b", "c"]

        # b (node 2) disconnects: a and c, on the other nodes, see it go as version 4.
        await b.sio.disconnect()
        for peer in (a, c):
            update = await peer.list_where(lambda ids: ids == ["a", "c"])
            assert update["version"] == 4
    finally:
        for peer in (a, b, c):
            await peer.sio.disconnect()
