//! `/metrics` (every registry, in the format the scraper's `Accept` asks
//! for) and `/healthz` + `/readyz`, each on its own address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::NodeHealth;
use crate::metrics::{Exposition, Format};
use crate::zone::Zone;

/// HTTP connections served at once per server (scrapers and probes only).
const MAX_HTTP_CONNECTIONS: usize = 32;
/// Pending scrape and probe connections the kernel queues before accept.
const HTTP_BACKLOG: i32 = 64;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this time whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// What `/readyz` and `/healthz` look at.
pub struct Health {
    /// Faults of the node this agent serves (`/healthz`).
    pub node: Arc<NodeHealth>,
    pub zone: Arc<dyn Zone>,
    /// The DNS sockets are bound and served (`/healthz`).
    pub listeners_up: AtomicBool,
    /// New queries come to us rather than to a predecessor, which happens
    /// once the zone has synced (`/readyz`).
    pub taking_queries: AtomicBool,
    /// The XDP fast path has loaded, or is off (`/readyz`): a rollout must
    /// not retire the previous agent for one whose program may still fail.
    pub fast_path_loaded: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.listeners_up.load(Ordering::Relaxed)
            && self.zone.is_ready()
            && self.taking_queries.load(Ordering::Relaxed)
            && self.fast_path_loaded.load(Ordering::Relaxed)
    }
}

pub enum Pages {
    Metrics(Arc<Exposition>),
    Health(Arc<Health>),
}

impl Pages {
    /// The page at `path`; `accept` is the request's `Accept` header.
    fn answer(&self, path: &str, accept: Option<&str>) -> (StatusCode, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        match (self, path) {
            (Pages::Metrics(exposition), "/metrics") => {
                let format = Format::negotiate(accept);
                match exposition.encode(format) {
                    Ok(body) => (StatusCode::OK, format.content_type(), body),
                    Err(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        "metrics encoding failed\n".into(),
                    ),
                }
            }
            (Pages::Health(h), "/healthz") => {
                let faults = h.node.faults();
                if !h.listeners_up.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "listeners are not up\n".into(),
                    )
                } else if !faults.is_empty() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        format!("unhealthy: {}\n", faults.join("; ")),
                    )
                } else {
                    (StatusCode::OK, TEXT, "ok\n".into())
                }
            }
            (Pages::Health(h), "/readyz") => {
                if h.ready() {
                    (StatusCode::OK, TEXT, "ready\n".into())
                } else if !h.listeners_up.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "listeners are not up\n".into(),
                    )
                } else if !h.zone.is_ready() {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "cluster zone: first sync not done\n".into(),
                    )
                } else if !h.fast_path_loaded.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "XDP fast path loading\n".into(),
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "taking over new queries\n".into(),
                    )
                }
            }
            _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
        }
    }
}

/// Binds with SO_REUSEPORT, like the DNS listeners: in a rolling update the
/// new agent binds the same metrics and health ports while the old one
/// still holds them (a plain bind fails there with "address in use").
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(HTTP_BACKLOG)?;
    TcpListener::from_std(s.into())
}

pub async fn serve(listener: TcpListener, pages: Arc<Pages>, cancel: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let pages = pages.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let accept = req
                    .headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let (status, ctype, body) = pages.answer(req.uri().path(), accept);
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", ctype)
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts are valid");
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
    conns.shutdown().await;
}
