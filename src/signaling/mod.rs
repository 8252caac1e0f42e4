//! HTTP and WebSocket: warp routes and one task per signaling connection.
//! No GStreamer here; media is reached through [`crate::room`]. What a
//! connection's messages mean is decided by the pure [`session::Session`];
//! the task here only does I/O.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use warp::ws::{Message, WebSocket};
use warp::Filter;

use crate::certs::Identity;
use crate::cluster::{proxy, Cluster, Route};
use crate::config::Limits;
use crate::protocol::{self, ErrorCode, ProtocolError, ServerMessage};
use crate::room::{Hub, LayoutRequest, Membership, ParticipantEvent};

pub mod hls;
pub mod limits;
pub mod session;
use limits::{MessageRate, PerIpLimits, Verdict};
use session::{Input, Output, Session};

/// WebSocket close code for a frame over `max_frame_bytes`.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for a connection closed by the server for a
/// policy reason (idle, flooding); the reason text carries the code.
pub const CLOSE_POLICY: u16 = 1008;
/// Hard limit in the WebSocket codec: frames between `max_frame_bytes` and
/// this are read and refused with 1009, larger ones end the connection.
const CODEC_LIMIT: usize = 1024 * 1024;

/// The room-token secret, when auth is on.
pub type AuthSecret = Option<Arc<str>>;

/// What every connection of a server shares besides the rooms.
#[derive(Clone)]
pub struct Shared {
    pub secret: AuthSecret,
    pub limits: Limits,
    pub per_ip: Arc<PerIpLimits>,
    /// In a cluster: where joins go (docs/cluster.md). Set once the
    /// server is bound (the node's URL is made from the bound address);
    /// until then a clustered server takes no joins.
    pub cluster: Arc<std::sync::OnceLock<Arc<Cluster>>>,
    pub clustered: bool,
}

impl Shared {
    pub fn new(secret: AuthSecret, limits: Limits) -> Shared {
        Shared { secret, per_ip: PerIpLimits::new(limits.clone()), limits, cluster: Default::default(), clustered: false }
    }

    /// A node of a cluster: joins wait for [`Shared::cluster`] to be set.
    pub fn clustered(mut self) -> Shared {
        self.clustered = true;
        self
    }
}

/// The token a request carries: `?token=` (browsers) or `Authorization: Bearer`.
fn token() -> impl Filter<Extract = (Option<String>,), Error = warp::Rejection> + Clone {
    let query = warp::query::<std::collections::HashMap<String, String>>()
        .or(warp::any().map(std::collections::HashMap::new))
        .unify();
    query.and(warp::header::optional::<String>("authorization")).map(|q: std::collections::HashMap<String, String>, h: Option<String>| {
        q.get("token").cloned().or_else(|| h.and_then(|h| h.strip_prefix("Bearer ").map(|t| t.trim().to_string())))
    })
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// 401 (or 403) with `{"code","message"}`.
fn refused(status: warp::http::StatusCode, code: ErrorCode, message: String) -> warp::reply::Response {
    use warp::Reply;
    api_error(status, code, message).into_response()
}

/// `reply()` when auth is off or the request's token is an admin token for
/// `room`; 401 or 403 with the reason otherwise.
fn authorized(secret: &AuthSecret, token: Option<String>, room: &str, reply: impl FnOnce() -> warp::reply::Response) -> warp::reply::Response {
    let Some(secret) = secret else { return reply() };
    match crate::auth::verify(secret, token.as_deref(), now_unix()) {
        Err(e) => refused(warp::http::StatusCode::UNAUTHORIZED, e.code, e.message),
        Ok(c) if !c.admin_of(room) => {
            refused(warp::http::StatusCode::FORBIDDEN, ErrorCode::Forbidden, format!("the HTTP API of room `{room}` needs an admin token for it"))
        }
        Ok(_) => reply(),
    }
}

/// 429 `too_many_connections`: `ip` has all its places taken.
fn too_many_connections(ip: IpAddr, limits: &Limits) -> warp::reply::Response {
    let message = format!("{ip} has {} connections open, the most allowed", limits.connections_per_ip);
    refused(warp::http::StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyConnections, message)
}

/// A room's state as JSON, or 404 `unknown_room`.
fn room_json(room: &str, state: Option<impl serde::Serialize>) -> warp::reply::Response {
    use warp::Reply;
    match state {
        Some(st) => warp::reply::with_status(warp::reply::json(&st), warp::http::StatusCode::OK).into_response(),
        None => refused(warp::http::StatusCode::NOT_FOUND, ErrorCode::UnknownRoom, format!("no room `{room}`")),
    }
}

/// Filters: the routes of a server.
pub fn routes(hub: Arc<Hub>, web_dir: PathBuf, shared: Shared) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    use warp::Reply;
    let hls_dir = hub.hls_dir().to_path_buf();
    let with_hub = warp::any().map(move || hub.clone());
    let secret = shared.secret.clone();
    let with_secret = warp::any().map(move || secret.clone());
    let with_shared = warp::any().map(move || shared.clone());
    let health = warp::path("healthz").and(warp::path::end()).and(warp::get()).and(with_hub.clone()).map(|hub: Arc<Hub>| {
        warp::reply::json(&serde_json::json!({
            "status": "ok",
            "rooms": hub.room_count(),
            "participants": hub.participant_count(),
        }))
    });
    let api_hub = with_hub.clone();
    let put_layout = warp::path!("api" / "rooms" / String / "layout")
        .and(warp::put())
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::bytes())
        .and(api_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(|room: String, body: bytes::Bytes, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || put_layout(&room, &body, &hub).into_response())
        });
    let get_layout = warp::path!("api" / "rooms" / String / "layout")
        .and(warp::get())
        .and(api_hub)
        .and(with_secret.clone())
        .and(token())
        .map(|room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || room_json(&room, hub.layout_state(&room)))
        });
    // Ready for new joins: a load balancer stops sending clients while draining.
    let ready = warp::path("readyz").and(warp::path::end()).and(warp::get()).and(with_hub.clone()).map(|hub: Arc<Hub>| {
        if hub.is_draining() {
            refused(warp::http::StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerDraining, "draining for a restart: no new joins".into())
        } else {
            warp::reply::json(&serde_json::json!({"status": "ready"})).into_response()
        }
    });
    let admin = admin_routes(with_hub.clone(), with_secret.clone());
    // Prometheus scrapes; with auth on it needs an admin token for every room.
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(|hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, "*", || {
                warp::reply::with_header(hub.metrics_text(), "content-type", crate::metrics::CONTENT_TYPE).into_response()
            })
        });
    let get_stats = warp::path!("api" / "rooms" / String / "stats")
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(|room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || room_json(&room, hub.room_stats(&room)))
        });
    // The token and the per-address limits are checked before the
    // upgrade: a refused request gets 401 or 429 and a JSON reason, and no
    // WebSocket (a plain GET sees the same).
    let ws = warp::path("ws")
        .and(warp::path::end())
        .and(warp::ws().map(Some).or(warp::any().map(|| None)).unify())
        .and(with_hub.clone())
        .and(with_shared.clone())
        .and(token())
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>(proxy::KEY_HEADER))
        .and(warp::header::optional::<String>(proxy::CLIENT_IP_HEADER))
        .and(warp::header::optional::<String>(proxy::HOPS_HEADER))
        .map(|ws: Option<warp::ws::Ws>,
              hub: Arc<Hub>,
              shared: Shared,
              token: Option<String>,
              remote: Option<SocketAddr>,
              key: Option<String>,
              client_ip: Option<String>,
              hops: Option<String>| {
            let grant = match &shared.secret {
                None => None,
                Some(s) => match crate::auth::verify(s, token.as_deref(), now_unix()) {
                    Ok(c) => Some(c),
                    Err(e) => return refused(warp::http::StatusCode::UNAUTHORIZED, e.code, e.message),
                },
            };
            // A WebSocket another node of the cluster opened for a client
            // counts as that client's.
            let cluster = shared.cluster.get().cloned();
            if shared.clustered && cluster.is_none() {
                return refused(warp::http::StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ClusterUnavailable, "this node is still joining its cluster: try again in a moment".into());
            }
            let forwarded = cluster.as_ref().and_then(|c| proxy::forwarded(c.key(), key.as_deref(), client_ip.as_deref(), hops.as_deref()));
            let ip = forwarded.map(|f| f.client_ip).or(remote.map(|a| a.ip())).unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let hops = forwarded.map(|f| f.hops).unwrap_or(0);
            if hub.is_draining() {
                return refused(warp::http::StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServerDraining, "the server is draining for a restart: join again in a moment".into());
            }
            let Some(ws) = ws else {
                // A page whose WebSocket failed asks why with a plain GET.
                if shared.per_ip.connections(ip) >= shared.limits.connections_per_ip {
                    return too_many_connections(ip, &shared.limits);
                }
                return refused(warp::http::StatusCode::BAD_REQUEST, ErrorCode::UnsupportedFrame, "/ws is a WebSocket: send an upgrade request".into());
            };
            let Some(place) = shared.per_ip.connect(ip, Instant::now()) else {
                return too_many_connections(ip, &shared.limits);
            };
            ws.max_message_size(CODEC_LIMIT)
                .max_frame_size(CODEC_LIMIT)
                .on_upgrade(move |socket| async move {
                    let conn = Conn { hub, shared, ip, token, hops };
                    session(socket, conn, grant).await;
                    drop(place);
                })
                .into_response()
        });
    let index = warp::path::end().and(warp::fs::file(web_dir.join("index.html")));
    let hls = hls_routes(hls_dir);
    let files = warp::fs::dir(web_dir);
    let carried = carried_api(with_hub.clone(), with_shared.clone());
    let listed = cluster_room_list(with_hub.clone(), with_shared.clone());
    health.or(ready).or(metrics).or(carried).or(listed).or(admin).or(put_layout).or(get_layout).or(get_stats).or(ws).or(hls).or(index).or(files).with(warp::log("tessera::http"))
}

/// In a cluster, a room's HTTP API (`/api/rooms/{room}/...`) asked of a
/// node that does not run the room is carried to the node that does, with
/// the client's token; the answer comes back as it is. A request that
/// another node carried here is answered here.
fn carried_api(
    with_hub: impl Filter<Extract = (Arc<Hub>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    with_shared: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("api")
        .and(warp::path("rooms"))
        .and(warp::path::param::<String>())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::method())
        .and(warp::header::optional::<String>(proxy::KEY_HEADER))
        .and(with_hub)
        .and(with_shared)
        .and_then(|room: String, full: warp::path::FullPath, query: String, method: warp::http::Method, key: Option<String>, hub: Arc<Hub>, shared: Shared| async move {
            let Some(cluster) = shared.cluster.get().cloned() else { return Err(warp::reject::not_found()) };
            if key.is_some() {
                return Err(warp::reject::not_found());
            }
            match cluster.api_owner(&hub, &room).await {
                Some(base) => {
                    let path = if query.is_empty() { full.as_str().to_string() } else { format!("{}?{query}", full.as_str()) };
                    Ok((cluster, base, path, method))
                }
                None => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(token())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .then(|cluster: Arc<Cluster>, base: String, path: String, method: warp::http::Method, token: Option<String>, ct: Option<String>, body: bytes::Bytes| async move {
            use warp::Reply;
            let sent = proxy::forward_http(&base, cluster.key(), method.as_str(), &path, token.as_deref(), ct.as_deref(), &body);
            match tokio::time::timeout(Duration::from_secs(30), sent).await {
                Ok(Ok(a)) => {
                    let status = warp::http::StatusCode::from_u16(a.status).unwrap_or(warp::http::StatusCode::BAD_GATEWAY);
                    let mut r = warp::reply::with_status(a.body, status).into_response();
                    if let Some(ct) = a.content_type.and_then(|c| warp::http::HeaderValue::from_str(&c).ok()) {
                        r.headers_mut().insert("content-type", ct);
                    }
                    r
                }
                Ok(Err(e)) => refused(warp::http::StatusCode::BAD_GATEWAY, ErrorCode::ClusterUnavailable, format!("the room's node at {base} cannot be reached: {e:#}")),
                Err(_) => refused(warp::http::StatusCode::GATEWAY_TIMEOUT, ErrorCode::ClusterUnavailable, format!("the room's node at {base} did not answer within 30 s")),
            }
        })
}

/// In a cluster, `GET /api/rooms` lists the rooms of every live node, each
/// with its `node`. A request another node sent lists this node's only.
fn cluster_room_list(
    with_hub: impl Filter<Extract = (Arc<Hub>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    with_shared: impl Filter<Extract = (Shared,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("api" / "rooms")
        .and(warp::get())
        .and(warp::header::optional::<String>(proxy::KEY_HEADER))
        .and(with_shared)
        .and_then(|key: Option<String>, shared: Shared| async move {
            match shared.cluster.get().cloned() {
                Some(c) if key.is_none() => Ok((c, shared)),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(with_hub)
        .and(token())
        .then(|cluster: Arc<Cluster>, shared: Shared, hub: Arc<Hub>, token: Option<String>| async move {
            use warp::Reply;
            let secret = shared.secret.clone();
            let local = authorized(&secret, token.clone(), "*", || warp::reply().into_response());
            if !local.status().is_success() {
                return local;
            }
            let mut rooms: Vec<serde_json::Value> = hub
                .rooms_info()
                .into_iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .map(|mut v| {
                    v["node"] = cluster.node_id().into();
                    v
                })
                .collect();
            for (id, base) in cluster.other_nodes().await {
                let asked = proxy::forward_http(&base, cluster.key(), "GET", "/api/rooms", token.as_deref(), None, &[]);
                let Ok(Ok(a)) = tokio::time::timeout(Duration::from_secs(5), asked).await else {
                    tracing::warn!("listing rooms: node {id} at {base} did not answer");
                    continue;
                };
                let listed: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                for mut r in listed["rooms"].as_array().cloned().unwrap_or_default() {
                    r["node"] = id.clone().into();
                    rooms.push(r);
                }
            }
            warp::reply::json(&serde_json::json!({ "rooms": rooms })).into_response()
        })
}

/// HLS live streams, public like the page: `/hls/<name>/index.m3u8` (never
/// cached by clients: it changes every segment) and its segments, for any
/// origin, served from memory ([`hls::HlsFiles`]).
fn hls_routes(dir: PathBuf) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let files = hls::HlsFiles::new(dir);
    warp::path!("hls" / String / String).and(warp::get()).then(move |name: String, file: String| {
        let files = files.clone();
        async move { files.get(&name, &file).await }
    })
}

/// The admin API (docs/api.md): list rooms, one room, remove a member,
/// mute one in the mix, close a room, drain the server.
fn admin_routes(
    with_hub: impl Filter<Extract = (Arc<Hub>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    with_secret: impl Filter<Extract = (AuthSecret,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::http::StatusCode;
    use warp::Reply;
    let json = |v: serde_json::Value| warp::reply::json(&v).into_response();
    let list = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| authorized(&secret, token, "*", || json(serde_json::json!({ "rooms": hub.rooms_info() }))));
    let one = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(|room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| authorized(&secret, token, &room, || room_json(&room, hub.room_info(&room))));
    let close = warp::path!("api" / "rooms" / String)
        .and(warp::delete())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || match hub.close_room(&room, "an operator closed the room") {
                Ok(n) => json(serde_json::json!({ "room": room, "removed": n })),
                Err(e) => room_error(e),
            })
        });
    let remove = warp::path!("api" / "rooms" / String / "participants" / String)
        .and(warp::delete())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |room: String, id: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || match hub.remove_member(&room, &id, "an operator removed you from the room") {
                Ok(()) => json(serde_json::json!({ "room": room, "removed": id })),
                Err(e) => room_error(e),
            })
        });
    let mute = warp::path!("api" / "rooms" / String / "participants" / String / "mute")
        .and(warp::post())
        .and(warp::body::content_length_limit(1024))
        .and(warp::body::bytes())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |room: String, id: String, body: bytes::Bytes, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || {
                let audio = match serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("audio").and_then(|a| a.as_bool())) {
                    Some(a) => a,
                    None => return refused(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, "the body is {\"audio\": true} or {\"audio\": false}".into()),
                };
                match hub.server_mute(&room, &id, audio) {
                    Ok(()) => json(serde_json::json!({ "room": room, "id": id, "audio_muted": audio })),
                    Err(e) => room_error(e),
                }
            })
        });
    let start_rec = warp::path!("api" / "rooms" / String / "recordings")
        .and(warp::post())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .and_then(|room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            blocking_api(secret, token, room, StatusCode::CREATED, move |room| hub.start_recording(room))
        });
    let list_rec = warp::path!("api" / "rooms" / String / "recordings")
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || json(serde_json::json!({ "recordings": hub.recordings(&room) })))
        });
    let stop_rec = warp::path!("api" / "rooms" / String / "recordings" / String)
        .and(warp::delete())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .and_then(|room: String, id: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            blocking_api(secret, token, room, StatusCode::OK, move |room| hub.stop_recording(room, &id))
        });
    let start_stream = warp::path!("api" / "rooms" / String / "streams")
        .and(warp::post())
        .and(warp::body::content_length_limit(4096))
        .and(warp::body::bytes())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .and_then(|room: String, body: bytes::Bytes, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| async move {
            let target = match stream_target(&body) {
                Ok(t) => t,
                Err(msg) => return Ok(refused(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, msg)),
            };
            blocking_api(secret, token, room, StatusCode::CREATED, move |room| hub.start_stream(room, target)).await
        });
    let list_streams = warp::path!("api" / "rooms" / String / "streams")
        .and(warp::get())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .map(move |room: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, &room, || json(serde_json::json!({ "streams": hub.streams(&room) })))
        });
    let stop_stream = warp::path!("api" / "rooms" / String / "streams" / String)
        .and(warp::delete())
        .and(with_hub.clone())
        .and(with_secret.clone())
        .and(token())
        .and_then(|room: String, id: String, hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            blocking_api(secret, token, room, StatusCode::OK, move |room| hub.stop_stream(room, &id))
        });
    let drain = warp::path!("api" / "drain")
        .and(warp::post())
        .and(with_hub)
        .and(with_secret)
        .and(token())
        .map(move |hub: Arc<Hub>, secret: AuthSecret, token: Option<String>| {
            authorized(&secret, token, "*", || {
                hub.start_drain();
                warp::reply::with_status(json(serde_json::json!({ "draining": true, "rooms": hub.room_count() })), StatusCode::ACCEPTED).into_response()
            })
        });
    // Boxed in groups: one chain of them all overflows the type checker.
    let members = list.or(one).unify().or(close).unify().or(remove).unify().or(mute).unify().boxed();
    let outputs = start_rec.or(list_rec).unify().or(stop_rec).unify().or(start_stream).unify().or(list_streams).unify().or(stop_stream).unify().boxed();
    members.or(outputs).unify().or(drain).unify()
}

/// The body of `POST /api/rooms/{room}/streams`: `{"url": "rtmp://…"}` or
/// `{"hls": "name"}`.
fn stream_target(body: &[u8]) -> Result<crate::room::StreamTarget, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match (v.get("url").and_then(|u| u.as_str()), v.get("hls").and_then(|h| h.as_str())) {
        (Some(url), None) => Ok(crate::room::StreamTarget::Rtmp(url.to_string())),
        (None, Some(name)) => Ok(crate::room::StreamTarget::Hls(name.to_string())),
        _ => Err("the body is {\"url\": \"rtmp://host/app/key\"} or {\"hls\": \"name\"}".into()),
    }
}

/// A room error of the admin API: 404 for what does not exist, 422 else.
fn room_error(e: crate::room::RoomError) -> warp::reply::Response {
    let p = e.to_protocol();
    let status = match p.code {
        ErrorCode::UnknownRoom | ErrorCode::UnknownParticipant | ErrorCode::UnknownRecording | ErrorCode::UnknownStream => warp::http::StatusCode::NOT_FOUND,
        ErrorCode::StreamExists => warp::http::StatusCode::CONFLICT,
        ErrorCode::InvalidField => warp::http::StatusCode::BAD_REQUEST,
        _ => warp::http::StatusCode::UNPROCESSABLE_ENTITY,
    };
    refused(status, p.code, p.message)
}

/// An admin request on `room` whose work blocks (GStreamer state changes):
/// checked like [`authorized`], then `work` runs off the async workers and
/// its result is the JSON answer (with `status`) or a room error.
async fn blocking_api<T: serde::Serialize + Send + 'static>(
    secret: AuthSecret,
    token: Option<String>,
    room: String,
    status: warp::http::StatusCode,
    work: impl FnOnce(&str) -> Result<T, crate::room::RoomError> + Send + 'static,
) -> Result<warp::reply::Response, warp::Rejection> {
    use warp::Reply;
    let mut allowed = false;
    let refusal = authorized(&secret, token, &room, || {
        allowed = true;
        warp::reply::Response::default()
    });
    if !allowed {
        return Ok(refusal);
    }
    Ok(match tokio::task::spawn_blocking(move || work(&room)).await {
        Ok(Ok(v)) => warp::reply::with_status(warp::reply::json(&v), status).into_response(),
        Ok(Err(e)) => room_error(e),
        Err(e) => refused(warp::http::StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e.to_string()),
    })
}

fn api_error(status: warp::http::StatusCode, code: ErrorCode, message: String) -> warp::reply::WithStatus<warp::reply::Json> {
    warp::reply::with_status(warp::reply::json(&serde_json::json!({"code": code, "message": message})), status)
}

/// `PUT /api/rooms/{room}/layout`: `{"group":..}` or `{"layout":..}` and/or
/// `{"pins":{"<key>":"<participant id>"|null}}`. Answers the room's layout state.
fn put_layout(room: &str, body: &[u8], hub: &Hub) -> warp::reply::WithStatus<warp::reply::Json> {
    use warp::http::StatusCode;
    let req: LayoutRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, ErrorCode::MalformedJson, format!("body: {e}")),
    };
    if req.group.is_some() && req.layout.is_some() {
        return api_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, "give `group` or `layout`, not both".into());
    }
    match hub.request_layout(room, &req) {
        Ok(st) => warp::reply::with_status(warp::reply::json(&st), StatusCode::OK),
        Err(e) => {
            let p = e.to_protocol();
            let status = match p.code {
                ErrorCode::UnknownRoom => StatusCode::NOT_FOUND,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            api_error(status, p.code, p.message)
        }
    }
}

/// A running HTTP (or HTTPS) server.
pub struct Server {
    pub addr: SocketAddr,
    /// Serving HTTPS and WSS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` (port 0 picks a free port) and serve in the background:
    /// HTTPS and WSS with `tls` (warp 0.3's rustls acceptor), plain HTTP
    /// without.
    pub fn start(hub: Arc<Hub>, addr: SocketAddr, web_dir: PathBuf, tls: Option<&Identity>, shared: Shared) -> Result<Server> {
        let (tx, rx) = oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let served = warp::serve(routes(hub, web_dir, shared));
        let (bound, fut): (SocketAddr, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) = match tls {
            None => {
                let (a, f) = served.try_bind_with_graceful_shutdown(addr, stop).with_context(|| format!("cannot listen on {addr}"))?;
                (a, Box::pin(f))
            }
            Some(id) => {
                let (a, f) = served
                    .tls()
                    .cert(id.cert_pem.as_bytes())
                    .key(id.key_pem.as_bytes())
                    .try_bind_with_graceful_shutdown(addr, stop)
                    .with_context(|| format!("cannot listen with TLS on {addr}"))?;
                (a, Box::pin(f))
            }
        };
        let task = tokio::spawn(fut);
        Ok(Server { addr: bound, tls: tls.is_some(), shutdown: Some(tx), task: Some(task) })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// How long a write may wait for a client that does not read; then the
/// connection counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn send_frame(tx: &mut futures::stream::SplitSink<WebSocket, Message>, m: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, tx.send(m)).await, Ok(Ok(())))
}

async fn send_msg(tx: &mut futures::stream::SplitSink<WebSocket, Message>, msg: &ServerMessage) -> bool {
    send_frame(tx, Message::text(msg.to_json())).await
}

/// A connection's place in a room: the membership and its events.
type Joined = (Membership, mpsc::Receiver<ParticipantEvent>);

/// Leave the room off the async workers: tearing a pipeline down blocks.
/// Then hand the memory it freed back to the system.
fn leave(joined: Option<Joined>) {
    if let Some((m, rx)) = joined {
        tokio::task::spawn_blocking(move || {
            drop(m);
            drop(rx);
            crate::media::return_freed_memory();
        });
    }
}

/// One connection's context: the rooms, the limits, the client's address.
struct Conn {
    hub: Arc<Hub>,
    shared: Shared,
    ip: IpAddr,
    /// The client's token, for a node this connection is carried to.
    token: Option<String>,
    /// Nodes that carried this connection here (0: the client's own).
    hops: u8,
}

/// What the connection does after a message.
enum Flow {
    Go,
    /// The socket is gone (or the session closed it).
    End,
    /// The room is on another node: carry the connection there.
    Carry(Box<proxy::Upper>),
}

/// One signaling connection: the WebSocket, the room events of its
/// participant, a clock, and a [`Session`] that decides what each of them
/// means. This task only reads, writes and carries out the session's
/// commands; it also drops messages over the connection's rate.
async fn session(socket: WebSocket, conn: Conn, grant: Option<crate::auth::Claims>) {
    let (mut tx, mut rx) = socket.split();
    let mut joined: Option<Joined> = None;
    let limits = conn.shared.limits.clone();
    let mut sess = Session::with_grant(grant, limits.clone());
    let mut rate = MessageRate::new(&limits, Instant::now());
    let mut heard = Instant::now();
    let mut pinged = Instant::now();
    // Checked every second, so a timeout is seen within a second of it.
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The text of the frame being handled (a `join` carried to another node).
    let mut frame: Option<String> = None;
    loop {
        let event = async {
            match &mut joined {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            incoming = rx.next() => {
                let msg = match incoming {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // Over the codec limit (or a broken socket): say why if we can.
                        let _ = send_frame(&mut tx, Message::close_with(CLOSE_TOO_BIG, "frame too large")).await;
                        tracing::debug!("websocket read error: {e}");
                        break;
                    }
                };
                heard = Instant::now();
                if msg.is_close() {
                    break;
                }
                if msg.is_ping() || msg.is_pong() {
                    continue;
                }
                match rate.check(heard) {
                    Verdict::Take => {}
                    Verdict::Drop => continue,
                    Verdict::DropAndTell => {
                        let e = ProtocolError::new(ErrorCode::RateLimited, format!("more than {} messages a second (burst {}): messages are being dropped", limits.messages_per_second, limits.message_burst));
                        if !send_msg(&mut tx, &e.to_message()).await {
                            break;
                        }
                        continue;
                    }
                }
                if msg.is_binary() {
                    let e = ProtocolError::new(ErrorCode::UnsupportedFrame, "binary frames are not part of the protocol; send JSON text");
                    Input::Frame(Err(e))
                } else {
                    let Ok(text) = msg.to_str() else { continue };
                    let max = limits.message.frame_bytes;
                    if text.len() > max {
                        let _ = send_frame(&mut tx, Message::close_with(CLOSE_TOO_BIG, format!("frames are limited to {max} bytes"))).await;
                        break;
                    }
                    if conn.shared.clustered {
                        // A join may be carried to another node as it came.
                        frame = Some(text.to_string());
                    }
                    Input::Frame(protocol::parse_client_message_with(text, &limits.message))
                }
            }
            ev = event => match ev {
                Some(e) => Input::Event(e),
                None => Input::EventsClosed,
            },
            _ = clock.tick() => {
                let now = Instant::now();
                if now.duration_since(pinged) >= limits.ping_interval {
                    pinged = now;
                    if !send_frame(&mut tx, Message::ping(Vec::new())).await {
                        break;
                    }
                }
                let media_silent = joined.as_ref().and_then(|(m, _)| m.media_silence(now));
                Input::Tick { ws_silent: now.duration_since(heard), media_silent }
            }
        };
        match run(&mut sess, input, &conn, &mut joined, &mut tx, frame.as_deref()).await {
            Flow::Go => {}
            Flow::End => break,
            Flow::Carry(upper) => {
                leave(joined.take());
                proxy::bridge(tx, rx, *upper, limits.ping_interval, limits.idle_timeout).await;
                return;
            }
        }
    }
    leave(joined.take());
}

/// Feed `input` to the session and carry out what it asks, including the
/// inputs that carrying it out produces. `frame`: the text of the frame
/// `input` came from.
async fn run(
    sess: &mut Session,
    input: Input,
    conn: &Conn,
    joined: &mut Option<Joined>,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    frame: Option<&str>,
) -> Flow {
    let mut inputs = std::collections::VecDeque::from([input]);
    while let Some(input) = inputs.pop_front() {
        for out in sess.handle(input) {
            let refused = match out {
                Output::Send(m) => {
                    if let ServerMessage::Error { code, .. } = &m {
                        conn.hub.metrics().error(code.as_str());
                    }
                    if !send_msg(tx, &m).await {
                        return Flow::End;
                    }
                    None
                }
                Output::Hangup(m) => {
                    let _ = send_msg(tx, &m).await;
                    let _ = send_frame(tx, Message::close_with(1000u16, "bye")).await;
                    return Flow::End;
                }
                Output::Close(e) => {
                    conn.hub.metrics().error(e.code.as_str());
                    tracing::info!(ip = %conn.ip, "closing a connection: {e}");
                    let _ = send_msg(tx, &e.to_message()).await;
                    let _ = send_frame(tx, Message::close_with(CLOSE_POLICY, e.code.as_str())).await;
                    return Flow::End;
                }
                Output::Join { room, name, opts } => {
                    if !conn.shared.per_ip.join(conn.ip, Instant::now()) {
                        let l = &conn.shared.limits;
                        let e = ProtocolError::new(ErrorCode::RateLimited, format!("{} joins faster than {} a second", conn.ip, l.joins_per_second_per_ip));
                        conn.hub.metrics().join(e.code.as_str());
                        inputs.push_back(Input::JoinDone(Err(e)));
                        continue;
                    }
                    if let Some(cluster) = conn.shared.cluster.get() {
                        match cluster.route(&conn.hub, &room, conn.hops).await {
                            Ok(Route::Local) => {}
                            Ok(Route::Remote { node, url }) => {
                                let up = proxy::Upstream { url: &url, key: cluster.key(), client_ip: conn.ip, hops: conn.hops + 1, token: conn.token.as_deref() };
                                match proxy::open(&up, frame.unwrap_or_default()).await {
                                    Ok(upper) => {
                                        conn.hub.metrics().join("carried");
                                        tracing::debug!(room = %room, node = %node, "join carried to the room's node");
                                        return Flow::Carry(Box::new(upper));
                                    }
                                    Err(e) => {
                                        let msg = format!("room `{room}` is on node `{node}`, which cannot be reached: {e:#}; try again in a moment");
                                        let e = ProtocolError::new(ErrorCode::ClusterUnavailable, msg);
                                        conn.hub.metrics().join(e.code.as_str());
                                        inputs.push_back(Input::JoinDone(Err(e)));
                                        continue;
                                    }
                                }
                            }
                            Err(e) => {
                                conn.hub.metrics().join(e.code.as_str());
                                inputs.push_back(Input::JoinDone(Err(e)));
                                continue;
                            }
                        }
                    }
                    let (etx, erx) = mpsc::channel(256);
                    let hub = conn.hub.clone();
                    let res = tokio::task::spawn_blocking(move || hub.join_with(&room, &name, &opts, etx)).await;
                    let done = match res {
                        Ok(Ok(m)) => {
                            *joined = Some((m, erx));
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e.to_protocol()),
                        Err(e) => Err(ProtocolError::new(ErrorCode::Internal, format!("join failed: {e}"))),
                    };
                    conn.hub.metrics().join(done.as_ref().err().map(|e| e.code.as_str()).unwrap_or("ok"));
                    inputs.push_back(Input::JoinDone(done));
                    None
                }
                Output::Leave => {
                    leave(joined.take());
                    None
                }
                Output::ApplyAnswer(sdp) => {
                    if let Some((m, _)) = joined.as_ref() {
                        m.apply_answer(&sdp);
                    }
                    None
                }
                Output::AddIce { mline, candidate } => {
                    if let Some((m, _)) = joined.as_ref() {
                        m.add_ice(mline, &candidate);
                    }
                    None
                }
                Output::SetQuality(q) => joined.as_ref().and_then(|(m, _)| m.set_quality(&q).err()),
                Output::Mute { audio, video } => {
                    if let Some((m, _)) = joined.as_ref() {
                        m.set_mute(audio, video);
                    }
                    None
                }
                Output::Layout(req) => joined.as_ref().and_then(|(m, _)| m.request_layout(&req).err()),
                Output::Chat(text) => joined.as_ref().and_then(|(m, _)| m.chat(&text).err()),
            };
            if let Some(e) = refused {
                let e = e.to_protocol();
                conn.hub.metrics().error(e.code.as_str());
                if !send_msg(tx, &e.to_message()).await {
                    return Flow::End;
                }
            }
        }
    }
    Flow::Go
}
