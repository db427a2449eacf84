// Compatibility: the original usage guide's JavaScript client, `WebRTCPeerDiscovery`, copied
// nearly verbatim (only `io` is imported and the URL passed in), driven against the server.
// The subclass below adds only the hooks a test needs to await what the guide's code sees.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, uniq, withTimeout, rooms, TIMEOUT_MS } from '../lib/server.mjs';

// ---- from the guide, "JavaScript Client Example" (unchanged but for `export`-free scope) ----
class WebRTCPeerDiscovery {
    constructor(serverUrl = 'http://localhost:3001') {
        this.socket = io(serverUrl);
        this.currentRoom = null;
        this.peers = [];
        
        this.setupEventHandlers();
    }
    
    setupEventHandlers() {
        this.socket.on('join_room_success', (data) => {
            this.currentRoom = data.room_name;
            this.peers = data.peers;
            this.onPeerListUpdate(data.peers);
        });
        
        this.socket.on('peer_list_updated', (data) => {
            this.peers = data.peers;
            this.onPeerListUpdate(data.peers);
        });
        
        this.socket.on('join_room_error', (data) => {
            console.error('Failed to join room:', data.error);
        });
    }
    
    joinRoom(roomName, peerId, username) {
        this.socket.emit('join_room', {
            room_name: roomName,
            peer_id: peerId,
            username: username
        });
    }
    
    leaveRoom() {
        this.socket.emit('leave_room', {});
    }
    
    onPeerListUpdate(peers) {
        // Implement your WebRTC peer connection logic here
        console.log('Available peers for WebRTC:', peers);
        
        // Example: Initialize WebRTC connections to new peers
        peers.forEach(peer => {
            if (peer.peer_id !== this.myPeerId) {
                this.initWebRTCConnection(peer);
            }
        });
    }
    
    initWebRTCConnection(peer) {
        // Your WebRTC connection setup logic
        console.log('Setting up WebRTC with:', peer.username);
    }
}
// ---- end of the guide's code ----

/** The guide's class plus test hooks: every list the app saw, every WebRTC setup, every join error. */
class ObservedDiscovery extends WebRTCPeerDiscovery {
    constructor(serverUrl) {
        super(serverUrl);
        this.lists = [];
        this.setups = [];
        this.errors = [];
        this.watchers = new Set();
        this.socket.on('join_room_error', (data) => { this.errors.push(data); this.#wake(); });
    }

    #wake() { for (const w of [...this.watchers]) w(); }

    onPeerListUpdate(peers) {
        this.lists.push(peers);
        super.onPeerListUpdate(peers);
        this.#wake();
    }

    initWebRTCConnection(peer) {
        this.setups.push(peer.peer_id);
        super.initWebRTCConnection(peer);
    }

    /** Resolves once `probe()` returns something other than undefined (checked on every hook call). */
    until(probe, what) {
        let check;
        return withTimeout(new Promise((resolve) => {
            check = () => { const v = probe(); if (v !== undefined) resolve(v); };
            this.watchers.add(check);
            check();
        }), TIMEOUT_MS, what).finally(() => this.watchers.delete(check));
    }

    /** The first list the app saw since `from` (an index into this.lists) whose peer_ids match `pred`. */
    listWhere(pred, from = 0) {
        return this.until(() => this.lists.slice(from).find((peers) => pred(peers.map((p) => p.peer_id))), 'a peer list in the guide client');
    }
}

let srv;
const apps = [];
const quiet = { log: console.log };

before(async () => {
    srv = await startServer([]);
    console.log = () => {}; // the guide's client logs every list
});
after(async () => {
    console.log = quiet.log;
    apps.forEach((a) => a.socket.disconnect());
    await srv?.stop();
});

const app = () => { const a = new ObservedDiscovery(srv.url); apps.push(a); return a; };
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);

test('guide JS client: two peers find each other', async () => {
    const room = uniq('video-call');
    const alice = app();
    alice.joinRoom(room, 'alice-id', 'Alice');
    await alice.listWhere((ids) => same(ids, ['alice-id']));
    assert.equal(alice.currentRoom, room);
    const bob = app();
    bob.joinRoom(room, 'bob-id', 'Bob');
    const bobSees = await bob.listWhere((ids) => same(ids, ['alice-id', 'bob-id']));
    const aliceSees = await alice.listWhere((ids) => same(ids, ['alice-id', 'bob-id']));
    assert.equal(bob.currentRoom, room);
    assert.deepEqual(aliceSees.map((p) => p.username), ['Alice', 'Bob']);
    assert.deepEqual(bobSees, aliceSees);
    assert.deepEqual(alice.peers, aliceSees);
    assert.ok(alice.setups.includes('bob-id'), 'the guide code set up WebRTC towards the new peer');
    assert.ok(bob.setups.includes('alice-id'));
    // the guide's `curl http://localhost:3001/api/webrtc/rooms`
    const listing = await rooms(srv.url);
    assert.equal(listing[room].name, room);
    assert.equal(listing[room].peer_count, 2);
    assert.equal(listing[room].max_peers, 100);
});

test('guide JS client: leaveRoom() updates the other peer', async () => {
    const room = uniq('video-call');
    const [alice, bob] = [app(), app()];
    alice.joinRoom(room, 'alice-id', 'Alice');
    await alice.listWhere((ids) => same(ids, ['alice-id']));
    bob.joinRoom(room, 'bob-id', 'Bob');
    await alice.listWhere((ids) => same(ids, ['alice-id', 'bob-id']));
    const mark = alice.lists.length;
    bob.leaveRoom();
    const after = await alice.listWhere((ids) => same(ids, ['alice-id']), mark);
    assert.equal(after.length, 1);
    assert.deepEqual(alice.peers, after);
    // and Bob can come back
    bob.joinRoom(room, 'bob-id', 'Bob');
    await alice.listWhere((ids) => same(ids, ['alice-id', 'bob-id']), mark + 1);
});

test('guide JS client: a disconnect updates the other peer', async () => {
    const room = uniq('video-call');
    const [alice, bob] = [app(), app()];
    alice.joinRoom(room, 'alice-id', 'Alice');
    await alice.listWhere((ids) => same(ids, ['alice-id']));
    bob.joinRoom(room, 'bob-id', 'Bob');
    await alice.listWhere((ids) => same(ids, ['alice-id', 'bob-id']));
    const mark = alice.lists.length;
    bob.socket.disconnect();
    await alice.listWhere((ids) => same(ids, ['alice-id']), mark);
    assert.equal((await rooms(srv.url))[room].peer_count, 1);
});

test('guide JS client: join errors reach the guide\'s join_room_error handler with the guide\'s texts', async () => {
    const room = uniq('video-call');
    const alice = app();
    const logged = [];
    const original = console.error;
    console.error = (...args) => logged.push(args);
    try {
        alice.joinRoom(room, 'alice-id', '');
        await alice.until(() => alice.errors[0], 'join_room_error');
    } finally {
        console.error = original;
    }
    assert.equal(alice.errors[0].error, 'Missing required fields: room_name, peer_id, username');
    assert.deepEqual(logged[0], ['Failed to join room:', 'Missing required fields: room_name, peer_id, username']);
    assert.equal(alice.currentRoom, null);
});

test('guide JS client: the guide\'s usage line, with its default transports (polling, then upgrade)', async () => {
    const discovery = app();
    discovery.joinRoom('video-call-123', 'my-unique-id', 'Alice');
    const list = await discovery.listWhere((ids) => same(ids, ['my-unique-id']));
    assert.equal(list[0].username, 'Alice');
    assert.match(list[0].joined_at, /Z$/);
});
