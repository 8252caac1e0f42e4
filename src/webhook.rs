//! Webhooks: every [`HubEvent`] POSTed as JSON to `[webhook] url`, in
//! order, signed, retried with backoff; never in a room's way (the hub
//! hands events over without waiting, and a full queue drops them).
//!
//! A request (docs/api.md, Webhooks):
//!
//! ```text
//! POST /hook HTTP/1.1
//! Content-Type: application/webhook+json
//! Tessera-Signature: t=1795764280,v1=<hex HMAC-SHA256(secret, "1795764280." + body)>
//!
//! {"event":"participant_joined","id":"EV_…","created_at":1795764280,"room":{…},"participant":{…}}
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::room::HubEvent;

/// Events waiting to be sent; beyond this they are dropped (and logged).
pub const QUEUE: usize = 1024;
/// Attempts per event, and the wait before each retry (then it is dropped).
pub const RETRIES: [Duration; 4] = [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];
/// One attempt's time limit (connect, send, status line).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The `Tessera-Signature` header of `body` sent at Unix time `t`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: warp::http::Uri,
    pub secret: String,
}

impl Target {
    /// `url` must be http:// or https:// with a host.
    pub fn new(url: &str, secret: &str) -> Result<Target> {
        let uri: warp::http::Uri = url.parse().with_context(|| format!("the webhook URL `{url}` does not parse"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => bail!("the webhook URL `{url}` is not http:// or https://"),
        }
        if uri.host().is_none_or(|h| h.is_empty()) {
            bail!("the webhook URL `{url}` has no host");
        }
        Ok(Target { url: uri, secret: secret.to_string() })
    }
}

/// Start the sender on the current tokio runtime: the hub's events go
/// into the returned queue.
pub fn spawn(target: Target) -> tokio::sync::mpsc::Sender<HubEvent> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<HubEvent>(QUEUE);
    let target = Arc::new(target);
    let r = crate::room::random_secret();
    let prefix = format!("EV_{:02x}{:02x}{:02x}{:02x}", r[0], r[1], r[2], r[3]);
    tokio::spawn(async move {
        let mut seq = 0u64;
        while let Some(event) = rx.recv().await {
            seq += 1;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let mut body = serde_json::to_value(&event).unwrap_or_default();
            body["id"] = format!("{prefix}_{seq}").into();
            body["created_at"] = now.into();
            let body = body.to_string();
            deliver(&target, &body, now).await;
        }
    });
    tx
}

/// Send one event, retrying; log when it is given up.
async fn deliver(target: &Target, body: &str, t: u64) {
    let mut last = String::new();
    for (attempt, wait) in std::iter::once(Duration::ZERO).chain(RETRIES).enumerate() {
        tokio::time::sleep(wait).await;
        match tokio::time::timeout(TIMEOUT, post(target, body, t)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => return,
            Ok(Ok(status)) => last = format!("HTTP {status}"),
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = format!("no answer within {} s", TIMEOUT.as_secs()),
        }
        tracing::debug!("webhook attempt {} failed: {last}", attempt + 1);
    }
    tracing::warn!("webhook to {} given up after {} attempts: {last}", target.url, RETRIES.len() + 1);
}

/// One POST; the status code.
async fn post(target: &Target, body: &str, t: u64) -> Result<u16> {
    let uri = &target.url;
    let host = uri.host().context("no host")?;
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tessera\r\nContent-Type: application/webhook+json\r\nTessera-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        signature(&target.secret, t, body.as_bytes()),
        body.len()
    );
    exchange(connect(host, port, https).await?, &request).await
}

/// A byte stream to an HTTP server: TCP, or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connect to `host:port` (an IPv6 address in brackets or not), inside TLS
/// checked against the webpki roots when `https`.
pub(crate) async fn connect(host: &str, port: u16, https: bool) -> Result<Box<dyn Io>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port)).await.with_context(|| format!("connecting to {host}:{port}"))?;
    if !https {
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(bare.to_string()).context("not a TLS server name")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.context("TLS")?;
    Ok(Box::new(tls))
}

/// Write the request, read the status line.
async fn exchange(mut io: impl AsyncRead + AsyncWrite + Unpin, request: &str) -> Result<u16> {
    io.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).with_context(|| format!("no HTTP status in {:?}", line.lines().next().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_time_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(signature("s3cret", 1_700_000_000, br#"{"a":1}"#), "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940");
    }

    #[test]
    fn only_http_urls_with_a_host_are_targets() {
        assert!(Target::new("https://hooks.example.com/tessera?x=1", "s").is_ok());
        assert!(Target::new("http://127.0.0.1:9000/", "s").is_ok());
        for bad in ["ftp://x/", "hooks.example.com/x", "http://", "not a url"] {
            assert!(Target::new(bad, "s").is_err(), "{bad}");
        }
    }
}
