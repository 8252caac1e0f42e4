//! Carry a client's signaling WebSocket to the node that owns its room.
//! The client keeps talking to the node it reached; that node opens a
//! WebSocket of its own to the owner's `node_url`, marked with the
//! cluster key and carrying the client's address and token, sends the
//! client's `join` on it, and from then on copies frames both ways. The
//! owner answers as if the client were its own, so browsers, bots and
//! other WebRTC clients need no change. The media does not pass here: the
//! owner's ICE candidates carry its own addresses.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as TMessage;
use warp::ws::{Message, WebSocket};

/// Header with the cluster key: the WebSocket comes from a node of the cluster.
pub const KEY_HEADER: &str = "x-tessera-cluster-key";
/// Header with the client's address (trusted only with the key).
pub const CLIENT_IP_HEADER: &str = "x-tessera-client-ip";
/// Header with the nodes the join went through before.
pub const HOPS_HEADER: &str = "x-tessera-hops";

/// What a proxied WebSocket says about its client, once its key checked out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forwarded {
    pub client_ip: IpAddr,
    pub hops: u8,
}

/// Read the proxy headers of a request: `Some` only with the right key.
pub fn forwarded(key: &str, given_key: Option<&str>, client_ip: Option<&str>, hops: Option<&str>) -> Option<Forwarded> {
    let given = given_key?;
    // Constant time: the key is a secret.
    if given.len() != key.len() || given.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return None;
    }
    Some(Forwarded { client_ip: client_ip?.parse().ok()?, hops: hops.and_then(|h| h.parse().ok()).unwrap_or(1) })
}

/// The connection to the owner: where, and as whom.
pub struct Upstream<'a> {
    pub url: &'a str,
    pub key: &'a str,
    pub client_ip: IpAddr,
    pub hops: u8,
    pub token: Option<&'a str>,
}

pub type Upper = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open the WebSocket to the owner and send the client's join on it.
pub async fn open(up: &Upstream<'_>, join: &str) -> Result<Upper> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = up.url.into_client_request().with_context(|| format!("node URL `{}`", up.url))?;
    let h = request.headers_mut();
    h.insert(KEY_HEADER, up.key.parse().context("cluster key")?);
    h.insert(CLIENT_IP_HEADER, up.client_ip.to_string().parse().context("client address")?);
    h.insert(HOPS_HEADER, up.hops.to_string().parse().context("hops")?);
    if let Some(t) = up.token {
        h.insert("authorization", format!("Bearer {t}").parse().context("the token is not a valid header value")?);
    }
    let connect = tokio_tungstenite::connect_async(request);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(5), connect).await.context("no answer within 5 s")?.context("connecting")?;
    ws.send(TMessage::Text(join.to_string())).await.context("sending the join")?;
    Ok(ws)
}

/// Copy frames between the client and the owner until either closes. The
/// owner's pings are answered here (by the WebSocket library); the client
/// is pinged every `ping_interval` and dropped after `idle_timeout` of
/// silence, as the owner would have done.
pub async fn bridge(
    mut client_tx: futures::stream::SplitSink<WebSocket, Message>,
    mut client_rx: futures::stream::SplitStream<WebSocket>,
    upper: Upper,
    ping_interval: Duration,
    idle_timeout: Duration,
) {
    let (mut up_tx, mut up_rx) = upper.split();
    let mut heard = Instant::now();
    let mut pinged = Instant::now();
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = client_rx.next() => {
                let Some(Ok(m)) = m else { break };
                heard = Instant::now();
                let out = if m.is_close() {
                    let _ = up_tx.send(TMessage::Close(None)).await;
                    break;
                } else if m.is_ping() || m.is_pong() {
                    continue;
                } else if let Ok(t) = m.to_str() {
                    TMessage::Text(t.to_string())
                } else {
                    TMessage::Binary(m.into_bytes())
                };
                if up_tx.send(out).await.is_err() {
                    break;
                }
            }
            m = up_rx.next() => {
                let Some(Ok(m)) = m else {
                    let _ = client_tx.send(Message::close_with(1011u16, "the room's node went away")).await;
                    break;
                };
                let out = match m {
                    TMessage::Text(t) => Message::text(t),
                    TMessage::Binary(b) => Message::binary(b),
                    TMessage::Close(f) => {
                        let (code, reason) = f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1000, String::new()));
                        let _ = client_tx.send(Message::close_with(code, reason)).await;
                        break;
                    }
                    _ => continue,
                };
                if client_tx.send(out).await.is_err() {
                    let _ = up_tx.send(TMessage::Close(None)).await;
                    break;
                }
            }
            _ = clock.tick() => {
                let now = Instant::now();
                if now.duration_since(heard) >= idle_timeout {
                    let _ = up_tx.send(TMessage::Close(None)).await;
                    let _ = client_tx.send(Message::close_with(crate::signaling::CLOSE_POLICY, "idle_timeout")).await;
                    break;
                }
                if now.duration_since(pinged) >= ping_interval {
                    pinged = now;
                    if client_tx.send(Message::ping(Vec::new())).await.is_err() {
                        let _ = up_tx.send(TMessage::Close(None)).await;
                        break;
                    }
                }
            }
        }
    }
}

/// An HTTP answer carried back from another node.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The HTTP base (`http://HOST:PORT`, or `https://`) of a node whose
/// WebSocket is `ws_url`.
pub fn http_base(ws_url: &str) -> Option<String> {
    let rest = ws_url.strip_suffix("/ws")?;
    if let Some(r) = rest.strip_prefix("wss://") {
        Some(format!("https://{r}"))
    } else {
        rest.strip_prefix("ws://").map(|r| format!("http://{r}"))
    }
}

/// Carry one HTTP API request to another node (`Connection: close`; the
/// answer read whole, at most 8 MiB) with the cluster key and the client's
/// token.
pub async fn forward_http(base: &str, key: &str, method: &str, path_and_query: &str, token: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Result<HttpAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: warp::http::Uri = base.parse().with_context(|| format!("node URL `{base}`"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().context("no host")?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tessera-node\r\n{KEY_HEADER}: {key}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(t) = token {
        // From a query string it could hold a line break (%0D%0A): it would
        // add headers of the client's choosing to the request.
        anyhow::ensure!(!t.chars().any(|c| c.is_control()), "the token holds control characters");
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let mut io = crate::webhook::connect(host, port, https).await?;
    io.write_all(&request).await?;
    let mut raw = Vec::new();
    // At most 8 MiB of answer.
    (&mut io).take(8 << 20).read_to_end(&mut raw).await?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of the HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    let content_type = head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string()));
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body).context("a bad chunked body")?;
    }
    Ok(HttpAnswer { status, content_type, body })
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_count_only_with_the_cluster_key() {
        let key = "k3y-0123456789abcdef";
        assert_eq!(forwarded(key, Some(key), Some("10.0.0.7"), Some("1")), Some(Forwarded { client_ip: "10.0.0.7".parse().unwrap(), hops: 1 }));
        assert_eq!(forwarded(key, Some("k3y-0123456789abcdeX"), Some("10.0.0.7"), Some("1")), None, "wrong key");
        assert_eq!(forwarded(key, None, Some("10.0.0.7"), Some("1")), None, "no key: a client's own headers are not trusted");
        assert_eq!(forwarded(key, Some(key), Some("not an address"), None), None);
    }

    #[test]
    fn a_nodes_http_base_comes_from_its_websocket_url() {
        assert_eq!(http_base("ws://10.0.0.1:8080/ws").as_deref(), Some("http://10.0.0.1:8080"));
        assert_eq!(http_base("wss://meet.example.org/ws").as_deref(), Some("https://meet.example.org"));
        assert_eq!(http_base("http://x/ws"), None);
    }

    #[test]
    fn chunked_bodies_are_put_together() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(dechunk(b"zz\r\n"), None);
    }
}
