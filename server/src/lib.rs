//! # signalroom-server
//!
//! A thin adapter from sockets and HTTP to `signalroom-core`: Socket.IO
//! (socketioxide) for peers, a REST API for services, the demo page at `/`.
//! Every rule lives in the core's registry; this crate moves bytes, keeps the
//! clock and the lease timer, and serves files.

#[cfg(feature = "cluster")]
mod cluster;
pub mod config;
mod health;
mod http;
mod hub;
mod metrics;
mod origin;
mod socket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use axum::http::HeaderValue;
use axum::serve::ListenerExt;
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::services::ServeDir;

pub use config::Config;
use hub::{Hub, now};

/// Builds the whole application: REST routes, Socket.IO, the demo page, CORS.
/// Returns the router and the Socket.IO handle (for shutdown).
pub fn app(config: &Config) -> (Router, SocketIo, Arc<Hub>) {
    metrics::install();
    let hub = Arc::new(Hub::new(config.registry()));
    let (io_layer, io) = SocketIo::builder()
        .ping_interval(Config::seconds(config.ping_interval))
        .ping_timeout(Config::seconds(config.ping_timeout))
        .max_payload(config.max_message_bytes as u64)
        .ws_max_message_size(config.max_message_bytes)
        .ws_max_frame_size(config.max_message_bytes)
        .max_buffer_size(config.max_queued_packets as usize)
        .with_state(hub.clone())
        .build_layer();
    io.ns("/", socket::on_connect.with(socket::register));

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
    let router = http::routes(api)
        .fallback_service(ServeDir::new(&config.www_dir))
        .layer(io_layer)
        .layer(axum::middleware::from_fn_with_state(origins, origin::guard))
        .layer(cors);
    (router, io, hub)
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
/// client cleanly and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (router, io, hub) = app(&config);
    let addr: SocketAddr = listener.local_addr()?;
    #[cfg(feature = "cluster")]
    let node = match &config.redis_url {
        Some(url) => Some(cluster::Node::start(
            url,
            config.node_id.clone(),
            addr,
            hub.health.clone(),
        )?),
        None => None,
    };
    let timer = tokio::spawn(expire_leases(hub));
    tracing::info!(%addr, www = %config.www_dir, "signalroom listening");
    // Signaling messages are small and latency-bound: without TCP_NODELAY a
    // second small write waits ~40 ms for the peer's delayed ACK (Nagle).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let grace = Config::seconds(config.shutdown_timeout);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: disconnecting clients");
            if tokio::time::timeout(grace, io.close()).await.is_err() {
                tracing::warn!("some clients did not take their close frame in time");
            }
        })
        .await?;
    timer.abort();
    #[cfg(feature = "cluster")]
    if let Some(node) = node {
        node.stop().await;
        tracing::info!(node = node.id(), "left the cluster");
    }
    Ok(())
}
