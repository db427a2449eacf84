//! The `signalroom` binary: parse flags, bind, serve until SIGINT/SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use signalroom_server::{Command, Config, mint_token, now, serve};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// jemalloc: a join storm allocates and frees one large packet buffer per
/// recipient per change on every worker thread; with it the storm settles
/// about 2.5 times sooner than on the system allocator (`cargo xtask bench`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
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
    if let Some(why) = config.unsupported() {
        Config::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(usize::from(n));
    }
    runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

/// Binds and serves until SIGINT/SIGTERM (`serve` prints the listening line
/// once everything has started).
async fn run(config: Config) -> anyhow::Result<()> {
    // Listen for SIGINT/SIGTERM before the listening line: a supervisor (or a test)
    // that stops the server right after that line must not kill it unhandled.
    let shutdown = shutdown_signal();
    let addr = format!("{}:{}", config.host, config.port());
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    serve(config, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts listening for SIGINT and SIGTERM now; the future resolves on the first.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async fn recv(s: &mut Option<Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            () = recv(&mut terminate) => {},
            () = recv(&mut interrupt) => {},
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
