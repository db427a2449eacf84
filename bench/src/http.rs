//! A minimal keep-alive HTTP/1.1 GET client for the REST scenario.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Http {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Http {
    /// Connects to `addr` for repeated GETs of `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> Result<Http> {
        let tcp = TcpStream::connect(addr).await.context("HTTP connect")?;
        tcp.set_nodelay(true)?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
        Ok(Http {
            stream: BufReader::with_capacity(64 * 1024, tcp),
            request: request.into_bytes(),
        })
    }

    /// One GET; returns the status and the body's length.
    pub async fn get(&mut self) -> Result<(u16, usize)> {
        self.stream.get_mut().write_all(&self.request).await?;
        let (status, body) = read_response(&mut self.stream).await?;
        Ok((status, body.len()))
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked): its status and body.
pub async fn read_response(stream: &mut BufReader<TcpStream>) -> Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        bail!("connection closed");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            bail!("connection closed in headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .context("bad chunk size")?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            stream.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else {
        let n = length.context("response without length")?;
        body.resize(n, 0);
        stream.read_exact(&mut body).await?;
    }
    Ok((status, body))
}
