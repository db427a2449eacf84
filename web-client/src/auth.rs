//! The `token` option: access tokens for a server started with `--auth-secret`
//! (docs/protocol.md "Access tokens", web-client/README.md).
//!
//! socket.io-client calls a function `auth` option before every CONNECT it
//! sends, the first and every reconnect; so a `token` given as a function (which
//! may return a promise) is called each time and a refreshed token is used. A
//! refused token comes back as a `connect_error` whose message is
//! `unauthorized`; socket.io-client then stops trying, and the client waits for
//! the next `join()` to connect again.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use crate::client::Shared;
use crate::js::{get_str, object};

/// The socket.io-client `auth` option for the app's `token` option: `{token}`
/// for a string, a callback for a function, `None` when no token is given.
pub(crate) fn auth_option(token: &JsValue) -> Option<JsValue> {
    if token.is_string() {
        return Some(object(&[("token", token)]));
    }
    let provider = token.dyn_ref::<Function>()?.clone();
    let auth = Closure::<dyn FnMut(Function)>::new(move |send: Function| {
        // A throwing provider or a rejected promise sends no token: the server refuses.
        let value = provider.call0(&JsValue::NULL).unwrap_or(JsValue::UNDEFINED);
        let send_ok = send.clone();
        let ok = Closure::once_into_js(move |t: JsValue| {
            let _ = send_ok.call1(&JsValue::NULL, &object(&[("token", &t)]));
        });
        let failed = Closure::once_into_js(move |_: JsValue| {
            let _ = send.call1(&JsValue::NULL, &object(&[]));
        });
        let promise = Promise::resolve(&value);
        if let Ok(then) =
            Reflect::get(&promise, &"then".into()).and_then(|f| f.dyn_into::<Function>())
        {
            let _ = then.call2(&promise, &ok, &failed);
        }
    });
    Some(auth.into_js_value())
}

/// After a refused token, `join()` connects again (calling a token function anew).
pub(crate) fn reconnect_if_refused(shared: &Shared) {
    let socket = match shared.try_borrow_mut() {
        Ok(mut s) if s.refused && !s.closed => {
            s.refused = false;
            s.socket.clone()
        }
        _ => return,
    };
    socket.connect();
}

/// Whether a `connect_error` is the server refusing the token.
pub(crate) fn is_refusal(err: &JsValue) -> bool {
    get_str(err, "message").as_deref() == Some("unauthorized")
}
