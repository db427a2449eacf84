//! Signal relay: pairs exchange `signal` messages; messages/s and one-way latency.
//! Closed loop (each side keeps `window` signals in flight: the most the server relays)
//! or open loop (`rate`: every side sends on a fixed schedule whatever comes back, and
//! latency counts from the scheduled time, so a server that falls behind shows it).

use super::*;

/// What the signal scenario offers.
pub struct SignalLoad {
    /// Pairs of peers, one room each.
    pub pairs: usize,
    /// Closed loop: signals in flight per side.
    pub window: usize,
    /// Bytes of padding in each signal's data.
    pub pad: usize,
    /// Seconds of sending.
    pub secs: f64,
    /// Open loop: messages/s offered by all sides together; 0 for the closed loop.
    pub rate: f64,
}

/// Scenario 3: signal relay between `load.pairs` pairs (one room each) for `load.secs`.
pub async fn signal(t: &Target, label: &str, load: SignalLoad, timeout: Duration) -> Result<Value> {
    let SignalLoad {
        pairs,
        window,
        pad,
        secs,
        rate,
    } = load;
    let mut out = base("signal", label);
    out.insert("pairs".into(), json!(pairs));
    if rate > 0.0 {
        out.insert("offered_per_s".into(), json!(rate));
    } else {
        out.insert("window".into(), json!(window));
    }
    out.insert("pad_bytes".into(), json!(pad));
    let (conns, _) = connect_all(t, pairs * 2, pairs).await?;
    let layout = Layout {
        prefix: run_prefix(),
        rooms: pairs,
        peers: 2,
        updates: Updates::Delta,
    };
    let setup = storm_phase(conns, &layout, timeout).await?;
    if setup.timed_out || setup.members.iter().any(|m| m.errors > 0) {
        bail!("signal set-up: the pairs did not all join");
    }
    let mut conns = setup.conns;
    // Probe: does the server relay at all?
    let probe = probe_signal(&mut conns, pairs).await;
    if let Err(reason) = probe {
        out.insert("supported".into(), json!(false));
        out.insert("reason".into(), json!(reason));
        close_all(conns).await;
        return Ok(Value::Object(out));
    }
    out.insert("supported".into(), json!(true));
    let meter = Meter::start(t.pid).await;
    let clock = Instant::now();
    let padding = "x".repeat(pad);
    let (go_tx, go_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let senders = conns.len();
    // Open loop: each side's period, and its offset so the sides do not send in step.
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(senders as f64 / rate));
    for (i, mut conn) in conns.into_iter().enumerate() {
        let to = if i < pairs { "p1" } else { "p0" };
        let offset = period.map(|p| p.mul_f64(i as f64 / senders as f64));
        let frame_head = format!(r#"42["signal",{{"to":"{to}","data":{{"pad":"{padding}","t":"#);
        let mut go_rx = go_rx.clone();
        let mut stop_rx = stop_rx.clone();
        let stopping = stopping.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut first_error: Option<String> = None;
            if go_rx.wait_for(|g| *g).await.is_err() {
                return (lat, errors, first_error, conn);
            }
            let stamped = |at: Duration| format!("{frame_head}{}}}}}]", at.as_micros());
            let make = |clock: Instant| stamped(clock.elapsed());
            // Open loop: the next scheduled send (from `clock`), if any.
            let mut due = offset.map(|o| clock.elapsed() + o);
            if due.is_none() {
                for _ in 0..window {
                    if conn.send_raw(make(clock)).await.is_err() {
                        errors += 1;
                    }
                }
            }
            for _ in 0..100_000_000u64 {
                let sending = due.filter(|_| !stopping.load(Ordering::Relaxed));
                let frame = tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    // Frames first: a late sender must not starve its own reading.
                    f = conn.next_frame() => f,
                    _ = tokio::time::sleep_until((clock + sending.unwrap_or_default()).into()), if sending.is_some() => {
                        let (Some(at), Some(p)) = (sending, period) else { continue };
                        if conn.send_raw(stamped(at)).await.is_err() {
                            errors += 1;
                            break;
                        }
                        due = Some(at + p);
                        continue;
                    }
                };
                let Ok(Some(frame)) = frame else {
                    errors += 1;
                    break;
                };
                let Packet::Event { name, body } = parse(&frame) else {
                    continue;
                };
                match name {
                    "signal" => {
                        if stopping.load(Ordering::Relaxed) {
                            continue;
                        }
                        if let Some(sent) = num_field(body, "t") {
                            let now = clock.elapsed().as_micros() as u64;
                            lat.push(Duration::from_micros(now.saturating_sub(sent)));
                        }
                        if period.is_some() {
                            continue;
                        }
                        if conn.send_raw(make(clock)).await.is_err() {
                            errors += 1;
                            break;
                        }
                    }
                    "signal_error" => {
                        errors += 1;
                        first_error.get_or_insert_with(|| body.chars().take(200).collect());
                    }
                    _ => {}
                }
            }
            (lat, errors, first_error, conn)
        }));
    }
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stopping.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    // Give in-flight signals a moment to drain, so the server is not cut off mid-write.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_tx.send(true);
    let (mut lat, mut errors, mut first_error, mut conns) = (Vec::new(), 0, None, Vec::new());
    for task in tasks {
        let (l, e, fe, c) = task.await.context("signal task panicked")?;
        lat.extend(l);
        errors += e;
        first_error = first_error.or(fe);
        conns.push(c);
    }
    let s: Summary = summarize(&mut lat);
    out.insert("secs".into(), json!(round3(elapsed.as_secs_f64())));
    out.insert("messages".into(), json!(s.count));
    out.insert(
        "messages_per_s".into(),
        json!((s.count as f64 / elapsed.as_secs_f64()).round()),
    );
    out.insert("latency_p50_ms".into(), json!(s.p50_ms));
    out.insert("latency_p99_ms".into(), json!(s.p99_ms));
    out.insert("latency_max_ms".into(), json!(s.max_ms));
    out.insert("errors".into(), json!(errors));
    if let Some(e) = first_error {
        out.insert("first_error".into(), json!(e));
    }
    meter.finish(&mut out);
    close_all(conns).await;
    Ok(Value::Object(out))
}

/// Sends one acked signal from pair 0's first peer to its second; `Err(reason)` when the
/// server does not relay.
pub(super) async fn probe_signal(conns: &mut [Conn], pairs: usize) -> Result<(), String> {
    let (a, rest) = conns.split_at_mut(pairs);
    let (a, b) = (&mut a[0], &mut rest[0]);
    a.emit_ack(1, "signal", r#"{"to":"p1","data":{"probe":true}}"#)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let r = tokio::time::timeout(left, async {
            tokio::select! {
                f = a.next_frame() => (true, f),
                f = b.next_frame() => (false, f),
            }
        })
        .await;
        let Ok((from_a, Ok(Some(frame)))) = r else {
            break;
        };
        match parse(&frame) {
            Packet::Ack { id: 1, body } if from_a => {
                if body.contains("\"error\"") {
                    return Err(format!(
                        "signal refused: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
                acked = true;
            }
            Packet::Event { name: "signal", .. } if !from_a => delivered = true,
            Packet::Event {
                name: "signal_error",
                body,
            } => {
                return Err(format!(
                    "signal refused: {}",
                    body.chars().take(200).collect::<String>()
                ));
            }
            _ => {}
        }
    }
    if delivered {
        Ok(())
    } else {
        Err("no signal relay: nothing delivered within 2 s".into())
    }
}
