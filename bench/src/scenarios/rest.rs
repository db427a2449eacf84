//! REST under load: `GET /api/webrtc/rooms` in a loop during a join storm.

use super::*;

/// Scenario 5: `GET /api/webrtc/rooms` from `http_conns` keep-alive clients while a join
/// storm runs.
#[allow(clippy::too_many_arguments)]
pub async fn rest(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    http_conns: usize,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("rest", label);
    let meter = Meter::start(t.pid).await;
    let (conns, _) = connect_all(t, rooms * peers, rooms).await?;
    let mut clients = Vec::new();
    for _ in 0..http_conns.max(1) {
        clients.push(Http::connect(t.addr, "/api/webrtc/rooms").await?);
    }
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (go_tx, go_rx) = watch::channel(false);
    let mut http_tasks = Vec::new();
    for mut c in clients {
        let stop = stop.clone();
        let mut go_rx = go_rx.clone();
        http_tasks.push(tokio::spawn(async move {
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (Vec::new(), 0, 0);
            }
            let (mut lat, mut errors, mut bytes) = (Vec::new(), 0usize, 0u64);
            let deadline = Instant::now() + Duration::from_secs(600);
            for _ in 0..10_000_000u64 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(30), c.get()).await {
                    Ok(Ok((200, len))) => {
                        lat.push(t.elapsed());
                        bytes += len as u64;
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors, bytes)
        }));
    }
    let storm = {
        let layout = layout.clone();
        tokio::spawn(async move { storm_phase(conns, &layout, timeout).await })
    };
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    let r = storm.await.context("storm task panicked")??;
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let (mut lat, mut errors, mut bytes) = (Vec::new(), 0, 0u64);
    for h in http_tasks {
        let (l, e, b) = h.await.context("HTTP task panicked")?;
        lat.extend(l);
        errors += e;
        bytes += b;
    }
    let s = summarize(&mut lat);
    storm_report(&r, &layout, &mut out);
    out.insert("http_conns".into(), json!(http_conns.max(1)));
    out.insert("rest_requests".into(), json!(s.count));
    out.insert(
        "rest_per_s".into(),
        json!((s.count as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("rest_p50_ms".into(), json!(s.p50_ms));
    out.insert("rest_p99_ms".into(), json!(s.p99_ms));
    out.insert("rest_errors".into(), json!(errors));
    out.insert("rest_bytes".into(), json!(bytes));
    meter.finish(&mut out);
    close_all(r.conns).await;
    Ok(Value::Object(out))
}
