//! signalroom-client: the browser library, compiled to WebAssembly.
//!
//! It exports the two JavaScript classes of web-client/README.md: `SignalroomClient` (a
//! socket.io-client connection and the room it is in) and `PeerMesh` (one
//! `RTCPeerConnection` per other peer). The rules (list versions, diffs, who offers
//! first, which connections to keep) are `signalroom_core::tracker`'s; this crate
//! only binds them to socket.io-client and WebRTC.

mod auth;
mod client;
mod js;
mod mesh;

pub use client::SignalroomClient;
pub use mesh::PeerMesh;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
export type Peer = { peer_id: string; username: string; joined_at: string };
export type JoinResult = { room_name: string; peer_id: string; peers: Peer[]; total_peers: number;
                           max_peers: number; version: number; ice_servers?: RTCIceServer[] };
/** `code`: one of the server's codes, or the client's own: "disconnected" (the connection
 *  dropped before the answer, or a signal while disconnected), "timeout", "closed",
 *  "invalid_url", "peer_connection_failed" (web-client/README.md, "Disconnects"). */
export type SignalroomError = { error: string; code: string };
export type PeersEvent = { room_name: string; peers: Peer[]; added: Peer[]; removed: Peer[];
                           total_peers: number; version: number };
export type ClientOptions = { autoRejoin?: boolean; transports?: string[];
                              token?: string | (() => string | Promise<string>);
                              [option: string]: unknown };
export type MeshOptions = { iceServers?: RTCIceServer[]; dataChannel?: string };
"#;
