//! The `signalroom` binary: parse flags, bind, serve until SIGINT/SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use signalroom_server::{Command, Config, mint_token, now, serve};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// jemalloc: a join storm allocates and frees one large packet buffer per
/// recipient per change on every worker thread; with it the storm settles
/// about 2.5 times sooner than on the system allocator (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::parse();
    if let Some(Command::Token { room, peer_id, ttl }) = &config.command {
        let Some(secret) = config.auth_secret() else {
            eprintln!(
                "error: signalroom token needs --auth-secret, --auth-secret-file or SIGNALROOM_AUTH_SECRET"
            );
            std::process::exit(2);
        };
        println!(
            "{}",
            mint_token(secret, room.clone(), peer_id.clone(), *ttl, now())?
        );
        return Ok(());
    }
    let addr = format!("{}:{}", config.host, config.port());
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // One line on stdout, for people and for tests that start the server on port 0.
    println!("signalroom listening on http://{local}");
    serve(config, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
