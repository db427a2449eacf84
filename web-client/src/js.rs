//! Hand-written bindings to the few JavaScript APIs the library touches:
//! socket.io-client's `io`, timers, and WebRTC. Binding them here, instead of
//! through web-sys, keeps the generated glue to exactly the calls made.

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

// The browser tests run on a page without an import map, so they build against a
// copy of socket.io-client's ESM file that `cargo xtask` vendors into `tests/vendor/`.
#[cfg_attr(
    not(feature = "vendored-socket-io"),
    wasm_bindgen(module = "socket.io-client")
)]
#[cfg_attr(
    feature = "vendored-socket-io",
    wasm_bindgen(module = "/tests/vendor/socket.io.esm.min.js")
)]
extern "C" {
    /// socket.io-client's `io(url, options)`.
    #[wasm_bindgen(catch)]
    pub fn io(url: &str, options: &JsValue) -> Result<Socket, JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// A socket.io-client `Socket`.
    #[derive(Clone)]
    pub type Socket;
    #[wasm_bindgen(method)]
    pub fn on(this: &Socket, event: &str, listener: &JsValue);
    #[wasm_bindgen(method)]
    pub fn emit(this: &Socket, event: &str, payload: &JsValue);
    /// `socket.timeout(ms).emit(event, payload, (err, answer) => ...)`.
    #[wasm_bindgen(method)]
    pub fn timeout(this: &Socket, ms: u32) -> Socket;
    #[wasm_bindgen(method, js_name = emit)]
    pub fn emit_with_ack(this: &Socket, event: &str, payload: &JsValue, ack: &JsValue);
    #[wasm_bindgen(method)]
    pub fn disconnect(this: &Socket);
    /// Packets socket.io-client holds until the next connection (a public field; an
    /// `Array` in 4.x, checked before use).
    #[wasm_bindgen(method, getter, js_name = sendBuffer)]
    pub fn send_buffer(this: &Socket) -> Array;
    #[wasm_bindgen(method)]
    pub fn connect(this: &Socket);
    /// Whether the socket is connected now.
    #[wasm_bindgen(method, getter)]
    pub fn connected(this: &Socket) -> bool;
    /// The socket's `Manager`, whose events tell about reconnection attempts.
    #[wasm_bindgen(method, getter, js_name = io)]
    pub fn manager(this: &Socket) -> Socket;

    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &JsValue, ms: u32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(id: &JsValue);

    /// `RTCPeerConnection`.
    #[derive(Clone)]
    pub type PeerConnection;
    #[wasm_bindgen(constructor, js_class = RTCPeerConnection, catch)]
    pub fn new(config: &JsValue) -> Result<PeerConnection, JsValue>;
    #[wasm_bindgen(method, js_name = addEventListener)]
    pub fn listen(this: &PeerConnection, event: &str, listener: &JsValue);
    #[wasm_bindgen(method, js_name = createDataChannel, catch)]
    pub fn create_data_channel(this: &PeerConnection, label: &str) -> Result<DataChannel, JsValue>;
    #[wasm_bindgen(method, js_name = addTrack, catch)]
    pub fn add_track(
        this: &PeerConnection,
        track: &JsValue,
        stream: &JsValue,
    ) -> Result<JsValue, JsValue>;
    /// `setLocalDescription()` without arguments: an offer or answer as the state asks.
    #[wasm_bindgen(method, js_name = setLocalDescription)]
    pub fn set_local_description(this: &PeerConnection) -> Promise;
    #[wasm_bindgen(method, js_name = setRemoteDescription)]
    pub fn set_remote_description(this: &PeerConnection, description: &JsValue) -> Promise;
    #[wasm_bindgen(method, js_name = addIceCandidate)]
    pub fn add_ice_candidate(this: &PeerConnection, candidate: &JsValue) -> Promise;
    #[wasm_bindgen(method, js_name = restartIce)]
    pub fn restart_ice(this: &PeerConnection);
    #[wasm_bindgen(method)]
    pub fn close(this: &PeerConnection);
    #[wasm_bindgen(method, getter, js_name = localDescription)]
    pub fn local_description(this: &PeerConnection) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = remoteDescription)]
    pub fn remote_description(this: &PeerConnection) -> JsValue;
    #[wasm_bindgen(method, getter, js_name = signalingState)]
    pub fn signaling_state(this: &PeerConnection) -> String;
    #[wasm_bindgen(method, getter, js_name = connectionState)]
    pub fn connection_state(this: &PeerConnection) -> String;

    /// `RTCDataChannel`.
    #[derive(Clone)]
    pub type DataChannel;
    #[wasm_bindgen(method, js_name = addEventListener)]
    pub fn listen(this: &DataChannel, event: &str, listener: &JsValue);
    #[wasm_bindgen(method, getter)]
    pub fn label(this: &DataChannel) -> String;
    #[wasm_bindgen(method, getter, js_name = readyState)]
    pub fn ready_state(this: &DataChannel) -> String;
    #[wasm_bindgen(method, catch)]
    pub fn send(this: &DataChannel, data: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    pub fn close(this: &DataChannel);
}

/// `obj[key]`, or `undefined` when `obj` is not an object.
pub fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// `obj[key]` when it is a string.
pub fn get_str(obj: &JsValue, key: &str) -> Option<String> {
    get(obj, key).as_string()
}

/// `obj[key]` as a non-negative integer, when it is a number.
pub fn get_u64(obj: &JsValue, key: &str) -> Option<u64> {
    get(obj, key)
        .as_f64()
        .filter(|v| *v >= 0.0 && v.is_finite())
        .map(|v| v as u64)
}

/// A plain object with these fields.
pub fn object(fields: &[(&str, &JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}

/// The library's error value, `{error, code}` as in docs/protocol.md.
pub fn error(code: &str, message: &str) -> JsValue {
    object(&[
        ("error", &JsValue::from_str(message)),
        ("code", &JsValue::from_str(code)),
    ])
}

/// Calls every listener with the arguments, one failing listener not stopping the rest.
pub fn call_all(listeners: &[Function], args: &[&JsValue]) {
    let args: Array = args.iter().copied().collect();
    for f in listeners {
        let _ = f.apply(&JsValue::NULL, &args);
    }
}
