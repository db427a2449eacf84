//! The join storm: rooms x peers connections join at once; joins/s, join latency,
//! convergence and the server's figures. Its phases are shared with the other scenarios.

use super::*;

/// Every connection joins its room at once; returns when every member has seen its room
/// complete (`total_peers == peers`), every join failed, or `timeout`.
pub(super) async fn storm_phase(
    conns: Vec<Conn>,
    layout: &Layout,
    timeout: Duration,
) -> Result<StormResult> {
    let n = conns.len();
    if n != layout.rooms * layout.peers {
        bail!("{n} connections for {} x {}", layout.rooms, layout.peers);
    }
    let progress = Progress::new(n);
    let (go_tx, go_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let peers = layout.peers as u64;
    let mut tasks = Vec::with_capacity(n);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let payload = layout.join(i);
        let progress = progress.clone();
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = MemberStats::default();
            let (m0, b0) = (conn.msgs, conn.bytes);
            let t0 = match go_rx.wait_for(Option::is_some).await {
                Ok(t) => t.unwrap_or_else(Instant::now),
                Err(_) => return (st, conn),
            };
            let sent = Instant::now();
            let mut done = false;
            if let Err(e) = conn.emit("join_room", &payload).await {
                st.errors += 1;
                st.first_error = Some(format!("{e:#}"));
                progress.one_done();
                return (st, conn);
            }
            loop {
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    f = conn.next_frame() => f,
                };
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) | Err(_) => {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| "connection closed".into());
                        if !done {
                            progress.one_done();
                        }
                        break;
                    }
                };
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match name {
                    "join_room_success" => {
                        st.join_latency.get_or_insert_with(|| sent.elapsed());
                    }
                    "peer_list_updated" | "peer_joined" | "peer_left" => {}
                    "join_room_error" => {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| body.chars().take(200).collect());
                        if !done {
                            done = true;
                            progress.one_done();
                        }
                        continue;
                    }
                    _ => continue,
                }
                let now = Instant::now();
                if let Some(v) = num_field(body, "version") {
                    st.saw_version = true;
                    if v >= peers && st.converged_version.is_none() {
                        st.converged_version = Some(now - t0);
                    }
                }
                if num_field(body, "total_peers") == Some(peers) && st.converged.is_none() {
                    st.converged = Some(now - t0);
                    if !done {
                        done = true;
                        progress.one_done();
                    }
                }
            }
            st.msgs = conn.msgs - m0;
            st.bytes = conn.bytes - b0;
            (st, conn)
        }));
    }
    // Let every task reach its start line before the gun.
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(Some(t0));
    let all = progress.wait(timeout).await;
    let duration = t0.elapsed();
    let _ = stop_tx.send(true);
    let mut members = Vec::with_capacity(n);
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        let (st, c) = t.await.context("member task panicked")?;
        members.push(st);
        conns.push(c);
    }
    Ok(StormResult {
        members,
        conns,
        duration,
        timed_out: !all,
    })
}

/// Adds a storm's figures to `out`.
pub(super) fn storm_report(r: &StormResult, layout: &Layout, out: &mut Map<String, Value>) {
    let n = r.members.len();
    let mut lat: Vec<Duration> = r.members.iter().filter_map(|m| m.join_latency).collect();
    let joined = lat.len();
    let s = summarize(&mut lat);
    let converged = r.members.iter().filter(|m| m.converged.is_some()).count();
    let conv = r.members.iter().filter_map(|m| m.converged).max();
    let saw_version = r.members.iter().any(|m| m.saw_version);
    let conv_ver = r.members.iter().filter_map(|m| m.converged_version).max();
    let conv_ver_all = r.members.iter().all(|m| m.converged_version.is_some());
    let errors: usize = r.members.iter().map(|m| m.errors).sum();
    let first_error = r.members.iter().find_map(|m| m.first_error.clone());
    let msgs: u64 = r.members.iter().map(|m| m.msgs).sum();
    let bytes: u64 = r.members.iter().map(|m| m.bytes).sum();
    out.insert("rooms".into(), json!(layout.rooms));
    out.insert("peers".into(), json!(layout.peers));
    out.insert("updates".into(), json!(layout.updates.name()));
    out.insert("connections".into(), json!(n));
    out.insert("joined".into(), json!(joined));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    out.insert("converged".into(), json!(converged == n && !r.timed_out));
    out.insert("converged_members".into(), json!(converged));
    out.insert("join_p50_ms".into(), json!(s.p50_ms));
    out.insert("join_p99_ms".into(), json!(s.p99_ms));
    out.insert("join_max_ms".into(), json!(s.max_ms));
    // The storm starts for everyone at once, so the last answer closes the window.
    let joins_per_s = if s.max_ms > 0.0 {
        joined as f64 / (s.max_ms / 1e3)
    } else {
        0.0
    };
    out.insert("joins_per_s".into(), json!(joins_per_s.round()));
    out.insert("convergence_ms".into(), json!(conv.map(ms)));
    out.insert(
        "convergence_version_ms".into(),
        if saw_version && conv_ver_all {
            json!(conv_ver.map(ms))
        } else {
            Value::Null
        },
    );
    out.insert("storm_ms".into(), json!(ms(r.duration)));
    out.insert("messages".into(), json!(msgs));
    out.insert("bytes".into(), json!(bytes));
}

/// Scenario 1: join storm.
pub async fn storm(
    t: &Target,
    label: &str,
    rooms: usize,
    peers: usize,
    updates: Updates,
    timeout: Duration,
) -> Result<Value> {
    let mut out = base("storm", label);
    let meter = Meter::start(t.pid).await;
    let before = t.pid.and_then(procfs::sample);
    let (conns, connect) = connect_all(t, rooms * peers, rooms).await?;
    out.insert("connect_ms".into(), json!(ms(connect)));
    let layout = Layout {
        prefix: run_prefix(),
        rooms,
        peers,
        updates,
    };
    let r = storm_phase(conns, &layout, timeout).await?;
    let after = t.pid.and_then(procfs::sample);
    storm_report(&r, &layout, &mut out);
    if let (Some(b), Some(a)) = (before, after) {
        let n = (rooms * peers).max(1) as f64;
        out.insert("server_rss_before_mb".into(), json!(mb(b.rss_kb)));
        out.insert("server_rss_converged_mb".into(), json!(mb(a.rss_kb)));
        out.insert(
            "kb_per_connection".into(),
            json!(round3((a.rss_kb as f64 - b.rss_kb as f64) / n)),
        );
    }
    meter.finish(&mut out);
    close_all(r.conns).await;
    Ok(Value::Object(out))
}
