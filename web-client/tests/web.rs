//! The bindings in headless Chromium (wasm-bindgen-test), against a real server whose
//! URL `cargo xtask test` passes at build time as `SIGNALROOM_TEST_URL`.
//!
//! Run by `cargo xtask test` (see `xtask/src/wasm.rs`); natively this file is empty.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function, Promise, Reflect};
use signalroom_client::{PeerMesh, SignalroomClient};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn url() -> &'static str {
    // Set by `cargo xtask test`, which starts the server first.
    env!("SIGNALROOM_TEST_URL")
}

fn client() -> SignalroomClient {
    SignalroomClient::new(url(), None).expect("a client")
}

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn field(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &s(key)).expect("an object")
}

/// A promise and the function that resolves it with its first argument: a listener
/// that resolves on its first call.
fn first_call() -> (JsFuture, Function) {
    let mut resolve = None;
    let promise = Promise::new(&mut |res, _| resolve = Some(res));
    (
        JsFuture::from(promise),
        resolve.expect("set by the executor"),
    )
}

#[wasm_bindgen_test]
async fn join_resolves_with_the_answer_and_fills_the_getters() {
    let c = client();
    let answer = JsFuture::from(c.join(s("wbt-join"), s("wbt-a"), s("Ada")))
        .await
        .expect("joined");
    assert_eq!(field(&answer, "room_name"), "wbt-join");
    assert_eq!(field(&answer, "version").as_f64(), Some(1.0));
    assert_eq!(c.room_name().as_deref(), Some("wbt-join"));
    assert_eq!(c.peer_id().as_deref(), Some("wbt-a"));
    let peers = Array::from(&c.peers());
    assert_eq!(peers.length(), 1);
    assert_eq!(field(&peers.get(0), "username"), "Ada");
    JsFuture::from(c.leave()).await.expect("left");
    assert_eq!(c.room_name(), None);
    c.close();
}

#[wasm_bindgen_test]
async fn a_refused_join_rejects_with_error_and_code() {
    let c = client();
    let e = JsFuture::from(c.join(s("wbt-err"), s(""), s("Ada")))
        .await
        .expect_err("refused");
    assert_eq!(field(&e, "code"), "missing_fields");
    assert_eq!(
        field(&e, "error"),
        "Missing required fields: room_name, peer_id, username"
    );
    let e = JsFuture::from(c.leave()).await.expect_err("not in a room");
    assert_eq!(field(&e, "code"), "not_in_room");
    c.close();
}

#[wasm_bindgen_test]
async fn on_peers_reports_who_was_added_and_removed() {
    let (a, b) = (client(), client());
    JsFuture::from(a.join(s("wbt-peers"), s("wbt-p1"), s("One")))
        .await
        .expect("joined");
    let (added, resolve) = first_call();
    a.on_peers(resolve);
    JsFuture::from(b.join(s("wbt-peers"), s("wbt-p2"), s("Two")))
        .await
        .expect("joined");
    let event = added.await.expect("an event");
    let added = Array::from(&field(&event, "added"));
    assert_eq!(added.length(), 1);
    assert_eq!(field(&added.get(0), "peer_id"), "wbt-p2");
    assert_eq!(field(&event, "total_peers").as_f64(), Some(2.0));

    let (removed, resolve) = first_call();
    a.on_peers(resolve);
    b.close();
    let event = removed.await.expect("an event");
    let removed = Array::from(&field(&event, "removed"));
    assert_eq!(field(&removed.get(0), "peer_id"), "wbt-p2");
    a.close();
}

#[wasm_bindgen_test]
async fn signals_arrive_and_early_ones_are_held() {
    let (a, b) = (client(), client());
    JsFuture::from(a.join(s("wbt-signal"), s("wbt-s1"), s("One")))
        .await
        .expect("joined");
    JsFuture::from(b.join(s("wbt-signal"), s("wbt-s2"), s("Two")))
        .await
        .expect("joined");
    // b hears a leave after a's signal: by then the signal was held for b.
    let (left, resolve) = first_call();
    b.on_peers(resolve);
    a.signal(s("wbt-s2"), s("early"));
    JsFuture::from(a.leave()).await.expect("left");
    left.await.expect("a left");
    let held = Array::new();
    let push = Closure::<dyn FnMut(JsValue, JsValue)>::new({
        let held = held.clone();
        move |from: JsValue, data: JsValue| {
            held.push(&Array::of2(&from, &data));
        }
    });
    b.on_signal(push.as_ref().unchecked_ref::<Function>().clone());
    push.forget();
    assert_eq!(held.length(), 1);
    let first = Array::from(&held.get(0));
    assert_eq!(first.get(0), "wbt-s1");
    assert_eq!(first.get(1), "early");
    b.close();
    a.close();
}

#[wasm_bindgen_test]
fn a_mesh_without_a_room_has_no_peers() {
    let c = client();
    let mesh = PeerMesh::new(&c, None);
    assert_eq!(mesh.connected_peers().length(), 0);
    assert!(!mesh.send("nobody", "hello"));
    assert_eq!(mesh.broadcast("hello"), 0);
    mesh.close();
    c.close();
}
