//! Webhooks (`--webhook-url`, `--webhook-secret`): every room change is POSTed
//! to each URL, so a team's backend learns who joined and left.
//!
//! The changes come from the registry's own records (`RoomChange`, drained
//! by the hub under its lock) and the bodies from `signalroom_core::webhook`,
//! never from guesses here. Delivery never slows signaling: the hub only
//! pushes an encoded body onto each URL's bounded queue (10,000 events, the
//! oldest dropped past that). One task per URL sends them one at a time, in
//! order, retrying a connection error, a timeout (5 s), a 5xx or a 429 with
//! backoff (0.5 s doubling, 6 tries in all); any other status but 2xx is not
//! retried. Each outcome is counted in `signalroom_webhooks_*_total`.

mod sign;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use signalroom_core::webhook::WebhookEvent;
use signalroom_core::{RoomChange, Timestamp};
use tokio::sync::Notify;

use crate::metrics;

/// Events queued per URL before the oldest is dropped.
pub const QUEUE_LIMIT: usize = 10_000;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per event, the first included.
const TRIES: u32 = 6;
/// The wait before the first retry; each later one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// One event, encoded once for every URL.
struct Job {
    id: Arc<str>,
    event: &'static str,
    body: Bytes,
    signature: Option<String>,
}

/// One receiver and its queue.
struct Target {
    url: String,
    queue: Mutex<VecDeque<Arc<Job>>>,
    ready: Notify,
}

/// The webhook senders of this server.
pub struct Webhooks {
    targets: Vec<Arc<Target>>,
    secret: Option<Vec<u8>>,
    /// Unique ids: this process's start (ns) and a sequence number.
    boot: String,
    seq: AtomicU64,
}

impl Webhooks {
    /// Senders for `urls` (none: `None`, and signaling does no webhook work at all).
    /// Call from within the tokio runtime: one task per URL starts here.
    pub fn start(urls: &[String], secret: Option<&str>) -> anyhow::Result<Option<Arc<Self>>> {
        if urls.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let hooks = Arc::new(Self {
            targets: urls
                .iter()
                .map(|url| {
                    Arc::new(Target {
                        url: url.clone(),
                        queue: Mutex::new(VecDeque::new()),
                        ready: Notify::new(),
                    })
                })
                .collect(),
            secret: secret.map(|s| s.as_bytes().to_vec()),
            boot: format!("{boot:x}-{:x}", std::process::id()),
            seq: AtomicU64::new(0),
        });
        for target in &hooks.targets {
            tokio::spawn(deliver_all(target.clone(), client.clone()));
        }
        Ok(Some(hooks))
    }

    /// Queues one delivery of each change for every URL, in order. Cheap and
    /// never blocking: called under the hub's lock.
    pub fn send(&self, changes: &[RoomChange], at: Timestamp) {
        for change in changes {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let id: Arc<str> = format!("{}-{n}", self.boot).into();
            let event = WebhookEvent::new(change, &id, at);
            let name = event.event;
            let body = match serde_json::to_vec(&event) {
                Ok(body) => Bytes::from(body),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a webhook");
                    continue;
                }
            };
            let signature = self
                .secret
                .as_deref()
                .map(|key| sign::signature(key, &body));
            let job = Arc::new(Job {
                id,
                event: name,
                body,
                signature,
            });
            for target in &self.targets {
                target.push(job.clone());
            }
        }
    }
}

impl Target {
    fn push(&self, job: Arc<Job>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= QUEUE_LIMIT {
            queue.pop_front();
            metrics::webhook_dropped("queue_full");
        }
        queue.push_back(job);
        drop(queue);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Arc<Job>> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Retry(String),
    Rejected(u16),
}

/// One URL's sender: its events, one at a time, in order, for ever.
async fn deliver_all(target: Arc<Target>, client: reqwest::Client) {
    loop {
        let Some(job) = target.pop() else {
            target.ready.notified().await;
            continue;
        };
        deliver(&target.url, &client, &job).await;
    }
}

async fn deliver(url: &str, client: &reqwest::Client, job: &Job) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=TRIES {
        match post(url, client, job).await {
            Attempt::Delivered => {
                metrics::webhook_delivered();
                return;
            }
            Attempt::Rejected(status) => {
                tracing::warn!(url, id = %job.id, status, "webhook refused; not retried");
                metrics::webhook_dropped("rejected");
                return;
            }
            Attempt::Retry(why) if attempt < TRIES => {
                tracing::debug!(url, id = %job.id, attempt, %why, "webhook failed; retrying");
                metrics::webhook_retried();
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Attempt::Retry(why) => {
                tracing::warn!(url, id = %job.id, %why, "webhook failed {TRIES} times; dropped");
                metrics::webhook_dropped("retries");
            }
        }
    }
}

async fn post(url: &str, client: &reqwest::Client, job: &Job) -> Attempt {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-signalroom-event", job.event)
        .header("x-signalroom-delivery", &*job.id)
        .body(job.body.clone());
    if let Some(signature) = &job.signature {
        request = request.header("x-signalroom-signature", signature);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Attempt::Delivered
            } else if status.is_server_error() || status.as_u16() == 429 {
                Attempt::Retry(format!("status {status}"))
            } else {
                Attempt::Rejected(status.as_u16())
            }
        }
        Err(e) => Attempt::Retry(e.to_string()),
    }
}
