//! Idle: connections join rooms one after another and are held; server memory per
//! connection before and after joining.

use super::*;

/// Reads on every connection for `hold` (answering pings), then hands them back.
pub(super) async fn hold_phase(conns: Vec<Conn>, hold: Duration) -> Result<Vec<Conn>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..1_000_000u32 {
                tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => if !matches!(f, Ok(Some(_))) { break },
                }
            }
            conn
        }));
    }
    tokio::time::sleep(hold).await;
    let _ = stop_tx.send(true);
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("hold task panicked")?);
    }
    Ok(out)
}

/// Scenario 4: `connections` connections joined in rooms of `peers` (one room after
/// another), held idle: the server's memory per connection.
pub async fn idle(
    t: &Target,
    label: &str,
    connections: usize,
    peers: usize,
    hold: Duration,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("idle", label);
    let peers = peers.clamp(1, connections.max(1));
    let rooms = connections.div_ceil(peers);
    let n = rooms * peers;
    let meter = Meter::start(t.pid).await;
    let before = t.pid.and_then(procfs::sample);
    let (conns, connect) = connect_all(t, n, rooms).await?;
    out.insert("connect_ms".into(), json!(ms(connect)));
    let conns = hold_phase(conns, Duration::from_millis(500)).await?;
    let connected = t.pid.and_then(procfs::sample);
    // Rooms fill one after another, so that the figure is the memory of connections held
    // in rooms, not of a storm's queues (the storm scenarios report those peaks).
    let prefix = run_prefix();
    let deadline = Instant::now() + timeout;
    let (mut converged, mut errors) = (true, 0usize);
    let mut rest = conns;
    let mut joined = Vec::with_capacity(n);
    for r in 0..rooms {
        let chunk: Vec<Conn> = rest.drain(..peers).collect();
        let layout = Layout {
            prefix: format!("{prefix}-{r}"),
            rooms: 1,
            peers,
            updates,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let res = storm_phase(chunk, &layout, left.max(Duration::from_millis(100))).await?;
        converged &= !res.timed_out && res.members.iter().all(|m| m.converged.is_some());
        errors += res.members.iter().map(|m| m.errors).sum::<usize>();
        joined.extend(res.conns);
    }
    let conns = hold_phase(joined, hold).await?;
    let held = t.pid.and_then(procfs::sample);
    out.insert("connections".into(), json!(n));
    out.insert("rooms".into(), json!(rooms));
    out.insert("peers".into(), json!(peers));
    out.insert("updates".into(), json!(updates.name()));
    out.insert("converged".into(), json!(converged));
    out.insert("errors".into(), json!(errors));
    if let (Some(b), Some(c), Some(h)) = (before, connected, held) {
        let per = |after: u64| round3((after as f64 - b.rss_kb as f64) / n as f64);
        out.insert("server_rss_before_mb".into(), json!(mb(b.rss_kb)));
        out.insert("server_rss_connected_mb".into(), json!(mb(c.rss_kb)));
        out.insert("server_rss_held_mb".into(), json!(mb(h.rss_kb)));
        out.insert("kb_per_connection".into(), json!(per(h.rss_kb)));
        out.insert("kb_per_connection_before_join".into(), json!(per(c.rss_kb)));
    }
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}
