//! Webhooks: every room change POSTed to each `--webhook-url`
//! (docs/protocol.md "Webhooks").
//!
//! The events are the registry's own [`RoomChange`] records (with their leave
//! reasons), taken after each command under the hub's lock, so they are in the
//! order the changes happened; nothing here guesses from requests. Queuing is
//! all the lock-holder does: each URL has its own bounded queue (at most
//! 10,000 events, the oldest dropped and counted past that) and its own task,
//! which delivers one event at a time, in order, retrying a connection error,
//! a 5 s timeout, a 5xx or a 429 with backoff (0.5 s doubling, 6 tries in all)
//! and giving up on any other non-2xx at once. So a slow or dead receiver never
//! slows signaling. The HTTP client is hyper-util's (plain `http://` URLs; put
//! a TLS-terminating proxy in front of an `https://` receiver).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Sha256;
use signalroom_core::{ChangeKind, RoomChange, Timestamp};
use tokio::sync::Notify;

/// Events one URL may have waiting; past it the oldest is dropped.
pub const QUEUE_LIMIT: usize = 10_000;
/// Tries per event, the first included.
const TRIES: u32 = 6;
/// The wait before the first retry; it doubles for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One event, serialized once for every URL.
#[derive(Clone)]
struct Job {
    id: String,
    event: &'static str,
    body: Bytes,
    signature: Option<String>,
}

/// One receiver: its queue and the task that empties it.
struct Target {
    url: Uri,
    queue: Mutex<VecDeque<Job>>,
    ready: Notify,
}

/// The webhook senders of all `--webhook-url`s.
pub struct Webhooks {
    targets: Vec<Arc<Target>>,
    secret: Option<String>,
    prefix: String,
    next: AtomicU64,
}

impl Webhooks {
    /// Starts one delivery task per URL (on the current tokio runtime).
    pub fn start(urls: &[Uri], secret: Option<String>) -> Self {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let webhooks = Self::queues(urls, secret);
        for target in &webhooks.targets {
            tokio::spawn(run(target.clone(), client.clone()));
        }
        webhooks
    }

    /// The queues alone, with no task emptying them.
    fn queues(urls: &[Uri], secret: Option<String>) -> Self {
        let targets: Vec<Arc<Target>> = urls
            .iter()
            .map(|url| {
                Arc::new(Target {
                    url: url.clone(),
                    queue: Mutex::new(VecDeque::new()),
                    ready: Notify::new(),
                })
            })
            .collect();
        // Unique ids across restarts: the start time, then a counter.
        let prefix = format!("{:x}", crate::hub::now().0);
        Self {
            targets,
            secret,
            prefix,
            next: AtomicU64::new(0),
        }
    }

    /// Queues one change for every URL. Never blocks (called under the hub's lock).
    pub fn push(&self, change: &RoomChange, now: Timestamp) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.prefix);
        let (event, body) = body(change, &id, now);
        let body = Bytes::from(body.to_string());
        let signature = self.secret.as_deref().map(|s| sign(s, &body));
        let job = Job {
            id,
            event,
            body,
            signature,
        };
        for target in &self.targets {
            let mut queue = target.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.len() >= QUEUE_LIMIT {
                queue.pop_front();
                ::metrics::counter!("signalroom_webhook_dropped_total", "reason" => "queue_full")
                    .increment(1);
            }
            queue.push_back(job.clone());
            drop(queue);
            target.ready.notify_one();
        }
    }
}

/// The event's name and its JSON body.
fn body(change: &RoomChange, id: &str, now: Timestamp) -> (&'static str, Value) {
    let mut body = json!({
        "id": id,
        "at": now.to_rfc3339(),
        "room_name": change.room_name,
        "version": change.version,
    });
    let event = match &change.kind {
        ChangeKind::RoomStarted => "room_started",
        ChangeKind::PeerJoined(peer) => {
            body["peer"] = json!(peer);
            "peer_joined"
        }
        ChangeKind::PeerUpdated(peer) => {
            body["peer"] = json!(peer);
            "peer_updated"
        }
        ChangeKind::PeerLeft { peer_id, reason } => {
            body["peer_id"] = json!(peer_id);
            body["reason"] = json!(reason.as_str());
            "peer_left"
        }
        ChangeKind::RoomFinished => "room_finished",
    };
    body["event"] = json!(event);
    (event, body)
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Delivers one URL's events, one at a time, in order, for as long as the server runs.
async fn run(target: Arc<Target>, client: Client<HttpConnector, Full<Bytes>>) {
    loop {
        let next = target
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match next {
            Some(job) => deliver(&target.url, &client, &job).await,
            None => target.ready.notified().await,
        }
    }
}

/// What one try came to.
enum Try {
    Delivered,
    Retry,
    Rejected,
}

async fn deliver(url: &Uri, client: &Client<HttpConnector, Full<Bytes>>, job: &Job) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 0..TRIES {
        if attempt > 0 {
            ::metrics::counter!("signalroom_webhook_retried_total").increment(1);
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        match try_once(url, client, job).await {
            Try::Delivered => {
                ::metrics::counter!("signalroom_webhook_delivered_total").increment(1);
                return;
            }
            Try::Rejected => {
                ::metrics::counter!("signalroom_webhook_dropped_total", "reason" => "rejected")
                    .increment(1);
                return;
            }
            Try::Retry => {}
        }
    }
    tracing::warn!(%url, id = %job.id, "webhook dropped after {TRIES} tries");
    ::metrics::counter!("signalroom_webhook_dropped_total", "reason" => "failed").increment(1);
}

async fn try_once(url: &Uri, client: &Client<HttpConnector, Full<Bytes>>, job: &Job) -> Try {
    let mut request = Request::post(url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-signalroom-event", job.event)
        .header("x-signalroom-delivery", job.id.as_str());
    if let Some(signature) = &job.signature {
        request = request.header("x-signalroom-signature", signature.as_str());
    }
    let Ok(request) = request.body(Full::new(job.body.clone())) else {
        return Try::Rejected;
    };
    match tokio::time::timeout(TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() {
                Try::Delivered
            } else if status.is_server_error() || status.as_u16() == 429 {
                Try::Retry
            } else {
                Try::Rejected
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(%url, error = %e, "webhook delivery failed");
            Try::Retry
        }
        Err(_) => Try::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u64) -> RoomChange {
        RoomChange {
            room_name: "r".into(),
            version,
            kind: ChangeKind::PeerLeft {
                peer_id: "p".into(),
                reason: signalroom_core::LeaveReason::Dropped,
            },
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_events() {
        let url: Uri = "http://127.0.0.1:9/hook".parse().expect("uri");
        let w = Webhooks::queues(&[url], None);
        for v in 0..(QUEUE_LIMIT as u64 + 5) {
            w.push(&change(v), Timestamp(0));
        }
        let queue = w.targets[0].queue.lock().expect("lock");
        assert_eq!(queue.len(), QUEUE_LIMIT);
        let first: Value = serde_json::from_slice(&queue[0].body).expect("json");
        assert_eq!(first["version"], 5, "the 5 oldest were dropped");
        assert_eq!(first["event"], "peer_left");
        assert_eq!(first["reason"], "dropped");
    }

    #[test]
    fn the_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
