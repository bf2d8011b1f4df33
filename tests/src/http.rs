//! The one HTTP client of the tests: a blocking `GET` for the agent's
//! `/metrics`, `/healthz` and `/readyz` (run inside a lab namespace with
//! [`crate::lab::Netns::enter`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bounds on connecting and on reading the whole response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`): the status and
/// the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let response = http_get_accept(addr, path, None)?;
    Ok((response.status, response.body))
}

/// An HTTP response: status, `Content-Type`, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` with an `Accept` header when `accept` is given.
pub fn http_get_accept(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("GET {path} from {addr}: not an HTTP response: {response:?}"),
        )
    };
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Response {
        status,
        content_type,
        body: body.to_string(),
    })
}
