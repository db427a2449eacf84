// The signalroom demo: join a room, see who is in it, chat and share a camera with
// everyone there over WebRTC. All signaling goes through the signalroom-client
// package; the page only draws what it reports.

import init, { SignalroomClient, PeerMesh } from "signalroom-client";

const $ = (id) => document.getElementById(id);
const server = location.origin;

/** Error codes in words (docs/protocol.md); the server's own text otherwise. */
const MESSAGES = {
  missing_fields: "Please fill in both the room and your name.",
  room_full: "That room is full. Try another one.",
  peer_id_taken: "Someone with your id is already in that room.",
  timeout: "The server did not answer. Is it running?",
  not_in_room: "You are not in a room.",
  peer_not_found: "That peer has left.",
  payload_too_large: "That message is too large.",
  unauthorized: "This server needs a token: open this page with ?token=<your access token> in its address.",
  forbidden: "Your token does not allow that room or id.",
  token_expired: "Your token has expired: reload the page with a new ?token=.",
};
const say = (e) => MESSAGES[e?.code] ?? e?.error ?? String(e);

function newPeerId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
}

let client;
let mesh;
let joined = false;
/** peer_id -> connection state of our RTCPeerConnection to it */
const states = new Map();
let localStream;

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  const me = client.peerId;
  for (const peer of joined ? client.peers : []) {
    const li = document.createElement("li");
    li.dataset.peerId = peer.peer_id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = peer.username;
    const state = document.createElement("span");
    state.className = "state";
    const s = peer.peer_id === me ? "you" : states.get(peer.peer_id) ?? "connecting";
    state.textContent = s === "new" ? "connecting" : s;
    li.dataset.state = state.textContent;
    li.append(name, state);
    list.append(li);
  }
  $("room-name").textContent = joined ? client.roomName : "no room";
}

function addChat(who, text, mine = false) {
  const li = document.createElement("li");
  if (mine) li.className = "mine";
  const b = document.createElement("b");
  b.textContent = who;
  li.append(b, document.createTextNode(" " + text));
  $("chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function setJoined(value) {
  joined = value;
  $("join").disabled = value;
  $("leave").disabled = !value;
  $("room").disabled = value;
  $("name").disabled = value;
  $("chat-input").disabled = !value;
  $("chat-send").disabled = !value;
  $("media").disabled = !value || !!localStream;
  document.body.dataset.joined = value;
  if (!value) {
    states.clear();
    for (const tile of $("tiles").querySelectorAll(".remote")) tile.remove();
  }
  renderPeers();
}

/** The access token from the page's address (`?token=`), for servers run with --auth-secret. */
const token = new URLSearchParams(location.search).get("token") ?? undefined;

async function refreshRooms() {
  try {
    const res = await fetch("/api/webrtc/rooms", token ? { headers: { authorization: `Bearer ${token}` } } : {});
    if (res.status === 401) throw new Error("this server needs a token");
    if (res.status === 403) throw new Error("your token may not list the rooms");
    if (!res.ok) throw new Error(res.statusText);
    const rooms = await res.json();
    const list = $("rooms");
    list.replaceChildren();
    const names = Object.keys(rooms);
    if (names.length === 0) {
      const li = document.createElement("li");
      li.textContent = "No rooms yet.";
      list.append(li);
    }
    for (const name of names) {
      const room = rooms[name];
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.textContent = name;
      button.title = "Use this room";
      button.onclick = () => { if (!joined) $("room").value = name; };
      li.append(button, document.createTextNode(` ${room.peer_count} of ${room.max_peers} peers`));
      list.append(li);
    }
  } catch (e) {
    $("rooms").textContent = "Cannot load the rooms: " + e.message;
  }
}

function tile(peerId, label) {
  let el = document.querySelector(`.tile[data-peer-id="${CSS.escape(peerId)}"]`);
  if (!el) {
    el = document.createElement("figure");
    el.className = "tile remote";
    el.dataset.peerId = peerId;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    el.append(video, caption);
    $("tiles").append(el);
  }
  return el;
}

function nameOf(peerId) {
  return client.peers.find((p) => p.peer_id === peerId)?.username ?? peerId;
}

async function main() {
  $("server").textContent = server;
  const params = new URLSearchParams(location.search);
  $("room").value = params.get("room") ?? "";
  $("name").value = params.get("name") ?? "";

  await init();
  client = new SignalroomClient(server, token ? { token } : {});
  mesh = new PeerMesh(client);
  window.signalroom = { client, mesh }; // for the curious, and for the browser tests

  client.onConnectionChange((state) => {
    const el = $("connection");
    el.dataset.state = state;
    el.textContent = state === "connected" ? "connected to the server" : state === "connecting" ? "connecting…" : "disconnected: reconnecting…";
  });
  client.onError((e) => {
    showError(say(e));
    if (e?.code === "unauthorized") {
      const el = $("connection");
      el.dataset.state = "unauthorized";
      el.textContent = "this server needs a token";
    }
  });
  client.onPeers((e) => {
    for (const gone of e.removed) {
      states.delete(gone.peer_id);
      document.querySelector(`.tile[data-peer-id="${CSS.escape(gone.peer_id)}"]`)?.remove();
    }
    renderPeers();
    refreshRooms();
  });

  mesh.onState((peerId, state) => {
    if (state === "closed") states.delete(peerId);
    else states.set(peerId, state);
    renderPeers();
  });
  mesh.onChannel((peerId, channel) => {
    channel.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg?.type === "chat" && typeof msg.text === "string") addChat(nameOf(peerId), msg.text);
    });
  });
  mesh.onTrack((peerId, ev) => {
    const video = tile(peerId, nameOf(peerId)).querySelector("video");
    video.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
  });

  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("");
    $("join").disabled = true;
    try {
      await client.join($("room").value.trim(), newPeerId(), $("name").value.trim());
      setJoined(true);
      const url = new URL(location.href);
      url.searchParams.set("room", client.roomName);
      history.replaceState(null, "", url);
    } catch (e) {
      showError(say(e));
      $("join").disabled = false;
    }
  });

  $("leave").addEventListener("click", async () => {
    showError("");
    try {
      await client.leave();
    } catch (e) {
      showError(say(e));
    }
    setJoined(false);
    refreshRooms();
  });

  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    const sent = mesh.broadcast(JSON.stringify({ type: "chat", text }));
    addChat("You", text, true);
    if (sent === 0 && client.peers.length > 1) showError("Nobody is connected yet; your message went to no one.");
    input.value = "";
  });

  $("media").addEventListener("click", async () => {
    try {
      localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (e) {
      showError("Cannot use the camera or microphone: " + (e.message || e.name));
      return;
    }
    const el = document.createElement("figure");
    el.className = "tile local";
    const video = document.createElement("video");
    video.autoplay = true;
    video.muted = true;
    video.playsInline = true;
    video.srcObject = localStream;
    const caption = document.createElement("figcaption");
    caption.textContent = "You";
    el.append(video, caption);
    $("tiles").prepend(el);
    mesh.addStream(localStream);
    $("media").disabled = true;
  });

  $("rooms-refresh").addEventListener("click", refreshRooms);
  refreshRooms();
  document.body.dataset.ready = "true";
}

main().catch((e) => showError("The page failed to start: " + (e?.message ?? say(e))));
