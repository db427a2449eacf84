"""Compatibility: the original usage guide's Python client, `WebRTCClient`, copied nearly verbatim
(python-socketio AsyncClient), driven against the server. The subclass below adds only the hooks
a test needs to await what the guide's code sees.
"""

import asyncio
import json
import urllib.request
import uuid

import socketio

TIMEOUT_S = 5


# ---- from the guide, "Python Client Example" (unchanged) ----
class WebRTCClient:
    def __init__(self, server_url="http://localhost:3001"):
        self.sio = socketio.AsyncClient()
        self.server_url = server_url
        self.current_room = None
        self.peers = []
        
        self.setup_handlers()
    
    def setup_handlers(self):
        @self.sio.event
        async def join_room_success(data):
            self.current_room = data['room_name']
            self.peers = data['peers']
            await self.on_peer_list_update(data['peers'])
        
        @self.sio.event
        async def peer_list_updated(data):
            self.peers = data['peers']
            await self.on_peer_list_update(data['peers'])
    
    async def connect(self):
        await self.sio.connect(self.server_url)
    
    async def join_room(self, room_name, peer_id, username):
        await self.sio.emit('join_room', {
            'room_name': room_name,
            'peer_id': peer_id,
            'username': username
        })
    
    async def on_peer_list_update(self, peers):
        print(f"Peers available for WebRTC: {len(peers)}")
        for peer in peers:
            print(f"  - {peer['username']} ({peer['peer_id']})")
# ---- end of the guide's code ----


class ObservedClient(WebRTCClient):
    """The guide's client plus a hook: every peer list the app saw, awaitable."""

    def __init__(self, server_url):
        super().__init__(server_url)
        self.lists = []
        self.changed = asyncio.Condition()

    async def on_peer_list_update(self, peers):
        await super().on_peer_list_update(peers)
        async with self.changed:
            self.lists.append(peers)
            self.changed.notify_all()

    async def list_where(self, pred, start=0):
        """The first list seen since index `start` whose peer_ids satisfy `pred`; fails after TIMEOUT_S."""

        def find():
            for peers in self.lists[start:]:
                if pred([p['peer_id'] for p in peers]):
                    return peers
            return None

        async def wait():
            async with self.changed:
                await self.changed.wait_for(lambda: find() is not None)
                return find()

        return await asyncio.wait_for(wait(), TIMEOUT_S)


def rooms(server_url):
    with urllib.request.urlopen(f"{server_url}/api/webrtc/rooms", timeout=TIMEOUT_S) as res:
        assert res.status == 200
        return json.loads(res.read())


def room_name():
    return f"video-call-{uuid.uuid4().hex[:8]}"


async def test_two_guide_clients_find_each_other(server_url):
    room = room_name()
    alice, bob = ObservedClient(server_url), ObservedClient(server_url)
    await alice.connect()
    await bob.connect()
    try:
        await alice.join_room(room, 'alice-id', 'Alice')
        await alice.list_where(lambda ids: ids == ['alice-id'])
        assert alice.current_room == room
        await bob.join_room(room, 'bob-id', 'Bob')
        bob_sees = await bob.list_where(lambda ids: ids == ['alice-id', 'bob-id'])
        alice_sees = await alice.list_where(lambda ids: ids == ['alice-id', 'bob-id'])
        assert bob.current_room == room
        assert [p['username'] for p in alice_sees] == ['Alice', 'Bob']
        assert bob_sees == alice_sees
        assert alice.peers == alice_sees
        for peer in alice_sees:
            assert set(peer) >= {'peer_id', 'username', 'joined_at'}
            assert peer['joined_at'].endswith('Z')
        listing = await asyncio.to_thread(rooms, server_url)
        assert listing[room]['peer_count'] == 2
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


async def test_leave_updates_the_other_client(server_url):
    room = room_name()
    alice, bob = ObservedClient(server_url), ObservedClient(server_url)
    await alice.connect()
    await bob.connect()
    try:
        await alice.join_room(room, 'alice-id', 'Alice')
        await alice.list_where(lambda ids: ids == ['alice-id'])
        await bob.join_room(room, 'bob-id', 'Bob')
        await alice.list_where(lambda ids: ids == ['alice-id', 'bob-id'])
        mark = len(alice.lists)
        # the guide's class has no leave method; it documents the event: leave_room with {}
        await bob.sio.emit('leave_room', {})
        after = await alice.list_where(lambda ids: ids == ['alice-id'], mark)
        assert alice.peers == after
        listing = await asyncio.to_thread(rooms, server_url)
        assert [p['peer_id'] for p in listing[room]['peers']] == ['alice-id']
    finally:
        await alice.sio.disconnect()
        await bob.sio.disconnect()


async def test_disconnect_updates_the_other_client(server_url):
    room = room_name()
    alice, bob = ObservedClient(server_url), ObservedClient(server_url)
    await alice.connect()
    await bob.connect()
    try:
        await alice.join_room(room, 'alice-id', 'Alice')
        await alice.list_where(lambda ids: ids == ['alice-id'])
        await bob.join_room(room, 'bob-id', 'Bob')
        await alice.list_where(lambda ids: ids == ['alice-id', 'bob-id'])
        mark = len(alice.lists)
        await bob.sio.disconnect()
        await alice.list_where(lambda ids: ids == ['alice-id'], mark)
        listing = await asyncio.to_thread(rooms, server_url)
        assert listing[room]['peer_count'] == 1
        await alice.sio.disconnect()
    finally:
        await alice.sio.disconnect()


async def test_guide_usage_main(server_url):
    """The guide's `main()`, without its 30-second keep-alive."""
    client = ObservedClient(server_url)
    await client.connect()
    try:
        await client.join_room('video-call-123', 'my-unique-id', 'Alice')
        peers = await client.list_where(lambda ids: ids == ['my-unique-id'])
        assert peers[0]['username'] == 'Alice'
        assert client.current_room == 'video-call-123'
    finally:
        await client.sio.disconnect()
