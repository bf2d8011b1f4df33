//! HTTP side of the fake API server: routing, list, watch and faults.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::state::{Filter, Resource};
use super::{BOOKMARK_INTERVAL, MAX_CONNECTIONS, MAX_REQUEST_LOG, Shared, WATCH_BUFFER};

type Body = BoxBody<Bytes, Infallible>;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
            Some(_) = conns.join_next() => continue,
        };
        let Ok((stream, _)) = accepted else { continue };
        if conns.len() >= MAX_CONNECTIONS {
            continue;
        }
        let shared = shared.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let cancel = cancel.clone();
                async move { Ok::<_, Infallible>(handle(req, shared, cancel).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("static response parts are valid")
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `(resource, namespace)` from a collection path.
fn route(path: &str) -> Option<(Resource, Option<String>)> {
    let path = path.trim_matches('/');
    let (group, rest) = if let Some(rest) = path.strip_prefix("api/v1/") {
        ("api/v1", rest)
    } else if let Some(rest) = path.strip_prefix("apis/discovery.k8s.io/v1/") {
        ("apis/discovery.k8s.io/v1", rest)
    } else {
        return None;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [plural] => Some((Resource::from_plural(group, plural)?, None)),
        ["namespaces", ns, plural] => {
            Some((Resource::from_plural(group, plural)?, Some(ns.to_string())))
        }
        _ => None,
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> Response<Body> {
    let line = format!("{} {}", req.method(), req.uri());
    {
        let mut log = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == MAX_REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(line);
    }
    let mut hang = shared.hang.subscribe();
    while *hang.borrow_and_update() {
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = hang.changed() => if changed.is_err() { break },
        }
    }
    {
        let mut faults = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        if faults.down {
            return full(
                StatusCode::SERVICE_UNAVAILABLE,
                status(503, "ServiceUnavailable", "fake API: down"),
            );
        }
        if faults.fail_next > 0 {
            faults.fail_next -= 1;
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                status(500, "InternalError", "fake API: injected failure"),
            );
        }
    }
    let Some((resource, namespace)) = route(req.uri().path()) else {
        return full(
            StatusCode::NOT_FOUND,
            status(404, "NotFound", "fake API: unknown path"),
        );
    };
    let params = query_params(req.uri().query());
    let filter = Filter {
        namespace,
        name: params
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .map(str::to_string),
    };
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        watch(&shared, resource, filter, &params, cancel)
    } else {
        list(&shared, resource, &filter, &params)
    }
}

fn list(
    shared: &Shared,
    resource: Resource,
    filter: &Filter,
    params: &HashMap<String, String>,
) -> Response<Body> {
    let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let items = state.list(resource, filter);
    let offset: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let page: Vec<Value> = items
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|v| (*v).clone())
        .collect();
    let mut metadata = json!({"resourceVersion": state.rv.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
    }
    full(
        StatusCode::OK,
        json!({"kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
               "metadata": metadata, "items": page}),
    )
}

fn watch(
    shared: &Arc<Shared>,
    resource: Resource,
    filter: Filter,
    params: &HashMap<String, String>,
    cancel: CancellationToken,
) -> Response<Body> {
    let timeout = Duration::from_secs(
        params
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(290),
    );
    let (tx, rx) = mpsc::channel::<Bytes>(WATCH_BUFFER);
    let (backlog, mut events, start_rv) = {
        let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let rv = match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => state.rv,
            Some(v) => v.parse().unwrap_or(0),
        };
        if rv < state.compacted {
            let message = format!("too old resource version: {rv} ({})", state.compacted);
            let line = format!(
                "{}\n",
                json!({"type": "ERROR", "object": status(410, "Expired", &message)})
            );
            return stream_response(single(line));
        }
        // Subscribe under the lock: no event falls between backlog and live.
        (
            state.since(resource, &filter, rv),
            shared.events.subscribe(),
            rv,
        )
    };
    let mut dropped = shared.drop_watches.subscribe();
    dropped.mark_unchanged();
    let mut stalled = shared.stall_watches.subscribe();
    stalled.mark_unchanged();
    tokio::spawn(async move {
        let mut last = start_rv;
        for event in backlog {
            last = event.rv;
            if tx.send(Bytes::from(event.line())).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        let mut deadline = std::pin::pin!(deadline);
        let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
        loop {
            let line = tokio::select! {
                // Faults first: an event queued behind a stall must not
                // slip out.
                biased;
                _ = cancel.cancelled() => return,
                _ = dropped.changed() => return,
                _ = stalled.changed() => {
                    // Silent until the server stops; the sender stays
                    // alive, so the client sees an open, idle stream.
                    cancel.cancelled().await;
                    return;
                }
                _ = &mut deadline => return,
                _ = bookmarks.tick() => format!("{}\n", json!({"type": "BOOKMARK", "object": {
                    "kind": resource.kind(), "apiVersion": resource.api_version(),
                    "metadata": {"resourceVersion": last.to_string()}}})),
                event = events.recv() => match event {
                    Ok(e) if e.rv > last && e.resource == resource && filter.matches(&e.namespace, &e.name) => {
                        last = e.rv;
                        e.line()
                    }
                    Ok(_) => continue,
                    // Lagged or closed: end the watch, the client resumes.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    stream_response(rx)
}

fn single(line: String) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Bytes::from(line));
    rx
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .expect("static response parts are valid")
}
