//! The soak's clients: Socket.IO v5 over a WebSocket or over HTTP long-polling,
//! each with a reader task that answers the server's pings, so a client that
//! waits for the others still looks alive; and the ways a client goes away
//! (clean close, dropped TCP, or abandoned: silent but still holding its
//! connection, left for the server's heartbeat to reclaim).
//!
//! Polling uses two keep-alive HTTP/1.1 connections per client, one for the
//! long GETs and one for POSTs, as browsers do.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How a client reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `transport=websocket` from the start.
    WebSocket,
    /// `transport=polling`, never upgraded.
    Polling,
}

/// One connected Socket.IO client on `/`.
pub struct Client {
    /// Engine.io packets to send (`42[...]`, `41`, `1`).
    out: mpsc::UnboundedSender<String>,
    /// Engine.io packets received, pings excluded (the reader answers them).
    inbox: mpsc::UnboundedReceiver<String>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    transport: Transport,
}

/// A client that stopped reading and answering pings but keeps its connection.
pub struct Abandoned {
    _out: mpsc::UnboundedSender<String>,
    writer: JoinHandle<()>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

impl Client {
    /// Opens an engine.io session and connects to namespace `/`.
    pub async fn connect(
        addr: SocketAddr,
        transport: Transport,
        timeout: Duration,
    ) -> Result<Client> {
        tokio::time::timeout(timeout, async {
            let mut c = match transport {
                Transport::WebSocket => websocket(addr).await?,
                Transport::Polling => polling(addr).await?,
            };
            c.send("40");
            loop {
                let p = c
                    .inbox
                    .recv()
                    .await
                    .context("closed before Socket.IO connect")?;
                if p.starts_with("40") {
                    return Ok(c);
                }
                if p.starts_with("44") {
                    bail!("Socket.IO connect refused: {p:.200}");
                }
            }
        })
        .await
        .map_err(|_| anyhow!("connect timed out after {timeout:?}"))?
    }

    /// Queues one engine.io packet.
    pub fn send(&self, packet: impl Into<String>) {
        let _ = self.out.send(packet.into());
    }

    /// Waits for the ack `43<id>[...]` and returns its text; other packets are skipped.
    pub async fn ack(&mut self, id: u64, timeout: Duration) -> Result<String> {
        let prefix = format!("43{id}[");
        tokio::time::timeout(timeout, async {
            loop {
                let p = self
                    .inbox
                    .recv()
                    .await
                    .context("closed while waiting for an ack")?;
                if p.starts_with(&prefix) {
                    return Ok(p);
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no ack {id} within {timeout:?}"))?
    }

    /// Stops reading and answering pings, but keeps the connection open.
    pub fn abandon(self) -> Abandoned {
        self.reader.abort();
        Abandoned {
            _out: self.out,
            writer: self.writer,
        }
    }

    /// Leaves `/` and closes the session cleanly; waits (bounded) until it is sent.
    pub async fn close(self) {
        self.send("41");
        if self.transport == Transport::Polling {
            self.send("1");
        }
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
        self.reader.abort();
    }

    /// Drops the TCP connections without a word.
    pub fn drop_tcp(self) {
        self.reader.abort();
        self.writer.abort();
    }
}

async fn websocket(addr: SocketAddr) -> Result<Client> {
    let tcp = TcpStream::connect(addr).await.context("TCP connect")?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .context("WebSocket handshake")?;
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (in_tx, inbox) = mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.flush().await;
    });
    let pong = out.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(t) if t.as_str() == "2" => {
                    let _ = pong.send("3".into());
                }
                Message::Text(t) if in_tx.send(t.as_str().to_owned()).is_err() => return,
                Message::Text(_) => {}
                Message::Close(_) => return,
                _ => {}
            }
        }
    });
    let mut c = Client {
        out,
        inbox,
        reader,
        writer,
        transport: Transport::WebSocket,
    };
    let open = c
        .inbox
        .recv()
        .await
        .context("closed before engine.io open")?;
    if !open.starts_with('0') {
        bail!("expected engine.io open, got {open:.80}");
    }
    Ok(c)
}

async fn polling(addr: SocketAddr) -> Result<Client> {
    let mut get = HttpConn::connect(addr).await?;
    let (status, body) = get
        .request("GET", "/socket.io/?EIO=4&transport=polling", "")
        .await?;
    if status != 200 || !body.starts_with('0') {
        bail!("polling handshake: {status} {body:.120}");
    }
    let open: serde_json::Value = serde_json::from_str(&body[1..]).context("open packet")?;
    let sid = open["sid"].as_str().context("no sid")?.to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let mut post = HttpConn::connect(addr).await?;
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (in_tx, inbox) = mpsc::unbounded_channel();
    let post_path = path.clone();
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            match post.request("POST", &post_path, &text).await {
                Ok((200, _)) => {}
                _ => return,
            }
        }
    });
    let pong = out.clone();
    let reader = tokio::spawn(async move {
        loop {
            let Ok((200, body)) = get.request("GET", &path, "").await else {
                return;
            };
            for p in body.split('\x1e') {
                match p {
                    "2" => {
                        let _ = pong.send("3".into());
                    }
                    "1" => return,
                    "6" | "" => {}
                    p if in_tx.send(p.to_owned()).is_err() => return,
                    _ => {}
                }
            }
        }
    });
    Ok(Client {
        out,
        inbox,
        reader,
        writer,
        transport: Transport::Polling,
    })
}

/// A keep-alive HTTP/1.1 connection for text requests and responses.
pub struct HttpConn {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl HttpConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let tcp = TcpStream::connect(addr).await.context("HTTP connect")?;
        tcp.set_nodelay(true)?;
        Ok(HttpConn {
            addr,
            stream: BufReader::with_capacity(16 * 1024, tcp),
        })
    }

    /// One request; returns the status and the body as text.
    pub async fn request(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let (status, out) = crate::http::read_response(&mut self.stream).await?;
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    }
}
