//! # signalroom-server
//!
//! A thin adapter from sockets and HTTP to `signalroom-core`: Socket.IO
//! (socketioxide) for peers, a REST API for services, the demo page at `/`.
//! Every rule lives in the core's registry; this crate moves bytes, keeps the
//! clock and the lease timer, and serves files.

mod access;
#[cfg(feature = "cluster")]
mod cluster;
mod compact;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod http;
mod hub;
mod limits;
mod listen;
mod metrics;
mod openapi;
mod origin;
mod runtime_stats;
mod socket;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use axum::http::HeaderValue;
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::services::ServeDir;

pub use access::mint as mint_token;
pub use config::{Command, Config};
use hub::Hub;
pub use hub::now;
use limits::Limits;
pub use limits::{LimitFlags, TrustedProxy};
use webhooks::Webhooks;

/// The WebSocket read buffer of each connection, bytes (bench/README.md, "Where a
/// connection's bytes go").
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Builds the whole application: REST routes, Socket.IO, the demo page, CORS.
/// Returns the router, the Socket.IO handle (for shutdown) and the shared state.
fn app(config: &Config) -> Result<(Router, SocketIo, Arc<Hub>, Arc<Limits>)> {
    metrics::install();
    let webhooks = Webhooks::start(&config.webhook_urls, config.webhook_secret.as_deref())?;
    let hub = Arc::new(Hub::new(config.registry(), webhooks));
    let limits = Arc::new(Limits::new(&config.limits));
    let access = config
        .auth_secret()
        .map(access::Access::new)
        .transpose()?
        .map(Arc::new);
    let mut builder = limits
        .configure(SocketIo::builder())
        .ping_interval(Config::seconds(config.ping_interval))
        .ping_timeout(Config::seconds(config.ping_timeout))
        .max_payload(config.max_message_bytes as u64)
        .ws_max_message_size(config.max_message_bytes)
        .ws_max_frame_size(config.max_message_bytes)
        .max_buffer_size(config.max_queued_packets as usize)
        // Each connection keeps its read buffer for life; clients send small
        // messages (4 KiB by default; a larger message still grows it).
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .with_state(hub.clone())
        .with_state(limits.clone());
    if let Some(access) = &access {
        builder = builder.with_state(access.clone());
    }
    let (io_layer, io) = builder.build_layer();
    if access.is_some() {
        let handler = socket::on_connect
            .with(socket::register)
            .with(access::socket::authenticate);
        io.ns("/", handler);
    } else {
        io.ns("/", socket::on_connect.with(socket::register));
    }

    let api = http::Api {
        hub: hub.clone(),
        max_body_bytes: config.max_body_bytes,
    };
    let cors = if config.cors_origins.is_empty() {
        CorsLayer::new()
            .allow_origin(Any)
            .allow_methods(Any)
            .allow_headers(Any)
    } else {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(Any)
            .allow_headers(Any)
    };
    let origins = origin::AllowedOrigins(Arc::new(config.cors_origins.clone()));
    let router = http::routes(api, access)
        .fallback_service(ServeDir::new(&config.www_dir))
        .layer(io_layer)
        .layer(axum::middleware::map_request(compact::own_head))
        .layer(axum::middleware::from_fn_with_state(origins, origin::guard))
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn(limits::drain_refused))
        .layer(cors);
    Ok((router, io, hub, limits))
}

/// Removes expired HTTP peers at the moment their leases run out.
async fn expire_leases(hub: Arc<Hub>) {
    loop {
        let next = hub.lock().registry.next_expiry();
        let wait = match next {
            Some(at) => {
                let ms = at.0.saturating_sub(now().0);
                tokio::time::sleep(std::time::Duration::from_millis(ms))
            }
            None => tokio::time::sleep(std::time::Duration::from_secs(3600)),
        };
        tokio::select! {
            () = wait => {
                let closing = {
                    let mut inner = hub.lock();
                    let deliveries = inner.registry.expire(now());
                    inner.deliver(&deliveries)
                };
                closing.close();
            }
            () = hub.leases_changed.notified() => {}
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then disconnects every
/// client cleanly and returns. Prints the listening line on stdout once
/// everything has started (a start-up error comes before it, never after).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (router, io, hub, limits) = app(&config)?;
    let sweep = tokio::spawn(limits.clone().sweep(io.clone()));
    let addr: SocketAddr = listener.local_addr()?;
    #[cfg(feature = "cluster")]
    let cluster = match &config.redis_url {
        Some(url) => {
            let (rooms, webhooks) = {
                let inner = hub.lock();
                (inner.registry.config().clone(), inner.webhooks())
            };
            let cluster = cluster::Cluster::start(
                url,
                config.node_id.clone(),
                addr,
                hub.health.clone(),
                rooms,
                webhooks,
            )?;
            hub.cluster.set(cluster.clone()).ok();
            Some(cluster)
        }
        None => None,
    };
    let timer = tokio::spawn(expire_leases(hub));
    // One line on stdout, for people and for tests that start the server on port 0.
    println!("signalroom listening on http://{addr}");
    tracing::info!(%addr, www = %config.www_dir, "signalroom listening");
    let grace = Config::seconds(config.shutdown_timeout);
    listen::run(listener, router, limits, shutdown, io.close(), grace).await;
    timer.abort();
    sweep.abort();
    #[cfg(feature = "cluster")]
    if let Some(cluster) = cluster {
        cluster.stop().await;
        tracing::info!(node = cluster.id(), "left the cluster");
    }
    Ok(())
}
