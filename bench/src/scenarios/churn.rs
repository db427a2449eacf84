//! Churn: members leave and rejoin as fast as answers come, for a fixed time.

use super::*;

/// Scenario 2: churn. `rooms x peers` members join; then `churners` of them leave and
/// rejoin as fast as answers come, for `secs`.
#[allow(clippy::too_many_arguments)]
pub async fn churn(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    churners: usize,
    secs: f64,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("churn", label);
    let churners = churners.min(rooms * peers);
    let (conns, _) = connect_all(t, rooms * peers, rooms).await?;
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let setup = storm_phase(conns, &layout, timeout).await?;
    if setup.timed_out || setup.members.iter().any(|m| m.errors > 0) {
        let mut o = Map::new();
        storm_report(&setup, &layout, &mut o);
        bail!("churn set-up did not converge: {}", Value::Object(o));
    }
    let meter = Meter::start(t.pid).await;
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run_for = Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for (i, mut conn) in setup.conns.into_iter().enumerate() {
        let churner = i < churners;
        let join = layout.join(i);
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            #[derive(PartialEq)]
            enum S {
                Leaving,
                Joining,
            }
            let (m0, b0) = (conn.msgs, conn.bytes);
            let mut joins = Vec::new();
            let mut leaves = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (joins, leaves, errors, first_error, 0, 0, conn);
            }
            let mut state = S::Leaving;
            let mut sent = Instant::now();
            if churner && conn.emit("leave_room", "{}").await.is_err() {
                errors += 1;
            }
            // Bounded by time (stop) and by count.
            for _ in 0..10_000_000u64 {
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => f,
                };
                let Ok(Some(frame)) = frame else {
                    errors += 1;
                    first_error.get_or_insert_with(|| "connection closed".to_string());
                    break;
                };
                if !churner {
                    continue;
                }
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match (name, &state) {
                    ("leave_room_success", S::Leaving) => {
                        leaves.push(sent.elapsed());
                        sent = Instant::now();
                        state = S::Joining;
                        if conn.emit("join_room", &join).await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    ("join_room_success", S::Joining) => {
                        joins.push(sent.elapsed());
                        sent = Instant::now();
                        state = S::Leaving;
                        if conn.emit("leave_room", "{}").await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    ("join_room_error" | "leave_room_error", _) => {
                        errors += 1;
                        first_error
                            .get_or_insert_with(|| body.chars().take(200).collect::<String>());
                        break;
                    }
                    _ => {}
                }
            }
            let (m, b) = (conn.msgs - m0, conn.bytes - b0);
            (joins, leaves, errors, first_error, m, b, conn)
        }));
    }
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(run_for).await;
    let _ = stop_tx.send(true);
    let elapsed = t0.elapsed();
    let (mut all_joins, mut all_leaves, mut errors, mut msgs, mut bytes) =
        (vec![], vec![], 0, 0u64, 0u64);
    let mut first_error = None;
    let mut conns = Vec::new();
    for task in tasks {
        let (j, l, e, fe, m, b, c) = task.await.context("churn task panicked")?;
        all_joins.extend(j);
        all_leaves.extend(l);
        errors += e;
        first_error = first_error.or(fe);
        msgs += m;
        bytes += b;
        conns.push(c);
    }
    let ops = all_joins.len() + all_leaves.len();
    let mut all: Vec<Duration> = all_joins.iter().chain(all_leaves.iter()).copied().collect();
    let s_all = summarize(&mut all);
    let s_join = summarize(&mut all_joins);
    let s_leave = summarize(&mut all_leaves);
    out.insert("rooms".into(), json!(rooms));
    out.insert("peers".into(), json!(peers));
    out.insert("updates".into(), json!(updates.name()));
    out.insert("churners".into(), json!(churners));
    out.insert("secs".into(), json!(round3(elapsed.as_secs_f64())));
    out.insert("ops".into(), json!(ops));
    out.insert(
        "ops_per_s".into(),
        json!((ops as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("op_p50_ms".into(), json!(s_all.p50_ms));
    out.insert("op_p99_ms".into(), json!(s_all.p99_ms));
    out.insert("join_p50_ms".into(), json!(s_join.p50_ms));
    out.insert("join_p99_ms".into(), json!(s_join.p99_ms));
    out.insert("leave_p50_ms".into(), json!(s_leave.p50_ms));
    out.insert("leave_p99_ms".into(), json!(s_leave.p99_ms));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    out.insert("messages".into(), json!(msgs));
    out.insert("bytes".into(), json!(bytes));
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}
