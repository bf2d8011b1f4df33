//! Fair sharing between clients (docs/design.md#fair-sharing): one source
//! address may hold at most `--max-concurrent-per-client` queries in
//! progress (once half of `--max-concurrent` is in use: below it nobody
//! else needs the room, see [`super::tally::SHARES_ENFORCED_ABOVE`]) and
//! `--tcp-max-connections-per-client` TCP connections, so one pod cannot
//! take what the node-wide bounds leave for everyone. Near
//! `--tcp-max-connections`, the connection idle the longest is closed to
//! make room for a new one (RFC 7766 section 6.2.3 lets a busy server do so).
//!
//! Pods have addresses of their own; hostNetwork pods and the node itself
//! share the node's addresses, and so share one client's bounds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::tally::{Tally, contended};

/// Above this share of `--tcp-max-connections` in use, every new connection
/// first closes the connection idle the longest (idle at least
/// [`RECLAIM_MIN_IDLE`]), so slow or idle clients give way to active ones
/// before the limit refuses anyone.
const RECLAIM_ABOVE: (usize, usize) = (7, 8);
/// A connection idle for less than this is not closed to make room below
/// the limit: its client is likely between two queries.
const RECLAIM_MIN_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct ClientBounds {
    /// `--max-concurrent`: the node-wide bound the query shares divide.
    pub queries_total: usize,
    pub queries_per_client: usize,
    pub tcp_total: usize,
    pub tcp_per_client: usize,
}

struct Connection {
    client: IpAddr,
    /// Queries of this connection being answered.
    active: usize,
    /// Since when `active` is 0.
    idle_since: Instant,
    close: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Queries in progress per client: at most `--max-concurrent` entries.
    queries: Tally<IpAddr>,
    /// Queries in progress, all clients together.
    queries_in_progress: usize,
    /// Open connections per client: at most `--tcp-max-connections` entries.
    tcp: Tally<IpAddr>,
    /// Open connections by id; at most `--tcp-max-connections`.
    connections: HashMap<u64, Connection>,
    next_id: u64,
}

pub struct Clients {
    bounds: ClientBounds,
    state: Mutex<State>,
}

/// One query in progress for a client, released on drop.
pub struct QueryPermit {
    clients: Arc<Clients>,
    client: IpAddr,
}

/// One open TCP connection, released on drop.
pub struct ConnectionPermit {
    clients: Arc<Clients>,
    id: u64,
    /// Fires when the connection is closed to make room.
    pub reclaimed: CancellationToken,
}

/// Why a connection was refused (the `bound` label).
pub type Refusal = &'static str;

/// What accepting a connection did.
pub struct Admitted {
    pub permit: ConnectionPermit,
    /// Idle connections closed to make room for this one.
    pub reclaimed: usize,
}

impl Clients {
    pub fn new(bounds: ClientBounds) -> Arc<Self> {
        Arc::new(Self {
            bounds: ClientBounds {
                queries_total: bounds.queries_total.max(1),
                queries_per_client: bounds.queries_per_client.max(1),
                tcp_total: bounds.tcp_total.max(1),
                tcp_per_client: bounds.tcp_per_client.max(1),
            },
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more query of `client`, or None at its bound while
    /// the node is busy.
    pub fn try_query(self: &Arc<Self>, client: IpAddr) -> Option<QueryPermit> {
        let mut state = self.lock();
        if contended(state.queries_in_progress, self.bounds.queries_total)
            && state.queries.get(&client) >= self.bounds.queries_per_client
        {
            return None;
        }
        state.queries.add(&client);
        state.queries_in_progress += 1;
        Some(QueryPermit {
            clients: self.clone(),
            client,
        })
    }

    /// Admits a new connection from `client`, closing idle ones to make
    /// room near the node-wide bound.
    pub fn try_connection(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Refusal> {
        let mut state = self.lock();
        if state.tcp.get(&client) >= self.bounds.tcp_per_client {
            return Err("client");
        }
        let now = Instant::now();
        let open = state.connections.len();
        let (num, den) = RECLAIM_ABOVE;
        let mut reclaimed = 0;
        if open >= self.bounds.tcp_total {
            if !reclaim_idlest(&mut state, Duration::ZERO, now) {
                return Err("total");
            }
            reclaimed += 1;
        } else if open * den >= self.bounds.tcp_total * num
            && reclaim_idlest(&mut state, RECLAIM_MIN_IDLE, now)
        {
            reclaimed += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.tcp.add(&client);
        let close = CancellationToken::new();
        state.connections.insert(
            id,
            Connection {
                client,
                active: 0,
                idle_since: now,
                close: close.clone(),
            },
        );
        Ok(Admitted {
            permit: ConnectionPermit {
                clients: self.clone(),
                id,
                reclaimed: close,
            },
            reclaimed,
        })
    }

    /// Open connections (for tests).
    pub fn connections(&self) -> usize {
        self.lock().connections.len()
    }
}

/// Closes the connection idle the longest, if one has been idle at least
/// `min_idle`; its slot is free at once.
fn reclaim_idlest(state: &mut State, min_idle: Duration, now: Instant) -> bool {
    let idlest = state
        .connections
        .iter()
        .filter(|(_, c)| c.active == 0 && now.duration_since(c.idle_since) >= min_idle)
        .min_by_key(|(_, c)| c.idle_since)
        .map(|(id, _)| *id);
    let Some(id) = idlest else {
        return false;
    };
    let conn = state.connections.remove(&id).expect("found above");
    state.tcp.remove_one(&conn.client);
    conn.close.cancel();
    true
}

/// A query of a connection being answered: the connection is not idle
/// until every such guard is dropped.
pub struct Busy {
    clients: Arc<Clients>,
    id: u64,
}

impl ConnectionPermit {
    /// A query of this connection starts being answered.
    pub fn begin(&self) -> Busy {
        if let Some(c) = self.clients.lock().connections.get_mut(&self.id) {
            c.active += 1;
        }
        Busy {
            clients: self.clients.clone(),
            id: self.id,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.clients.lock().connections.get_mut(&self.id) {
            c.active = c.active.saturating_sub(1);
            if c.active == 0 {
                c.idle_since = Instant::now();
            }
        }
    }
}

impl Drop for QueryPermit {
    fn drop(&mut self) {
        let mut state = self.clients.lock();
        state.queries.remove_one(&self.client);
        state.queries_in_progress -= 1;
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = self.clients.lock();
        // Already gone when it was reclaimed.
        if let Some(conn) = state.connections.remove(&self.id) {
            state.tcp.remove_one(&conn.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn clients(tcp_total: usize, tcp_per_client: usize) -> Arc<Clients> {
        with_queries(2, 2, tcp_total, tcp_per_client)
    }

    fn with_queries(
        queries_total: usize,
        queries_per_client: usize,
        tcp_total: usize,
        tcp_per_client: usize,
    ) -> Arc<Clients> {
        Clients::new(ClientBounds {
            queries_total,
            queries_per_client,
            tcp_total,
            tcp_per_client,
        })
    }

    #[test]
    fn queries_are_bounded_per_client() {
        let c = clients(8, 8);
        let a = c.try_query(ip(1)).unwrap();
        let _b = c.try_query(ip(1)).unwrap();
        assert_client_1_bounded_until_released(&c, a);
    }

    /// Client 1 is at its bound while it holds `held`, client 2 is not;
    /// once `held` goes, client 1 may ask again.
    fn assert_client_1_bounded_until_released<T>(c: &Arc<Clients>, held: T) {
        assert!(c.try_query(ip(1)).is_none());
        assert!(c.try_query(ip(2)).is_some());
        drop(held);
        assert!(c.try_query(ip(1)).is_some());
    }

    #[test]
    fn on_an_idle_node_a_client_may_go_past_its_share() {
        let c = with_queries(8, 1, 8, 8);
        let burst: Vec<QueryPermit> = (0..4).map(|_| c.try_query(ip(1)).unwrap()).collect();
        // Half of --max-concurrent in use: the share holds from now on.
        assert_client_1_bounded_until_released(&c, burst);
    }

    #[test]
    fn one_client_cannot_hold_every_connection() {
        let c = clients(8, 2);
        let _a = c.try_connection(ip(1)).unwrap();
        let _b = c.try_connection(ip(1)).unwrap();
        assert_eq!(c.try_connection(ip(1)).err(), Some("client"));
        assert!(c.try_connection(ip(2)).is_ok());
    }

    #[test]
    fn at_the_limit_the_idlest_connection_makes_room() {
        let c = clients(2, 2);
        let old = c.try_connection(ip(1)).unwrap().permit;
        let busy = c.try_connection(ip(2)).unwrap().permit;
        let query = busy.begin();
        let new = c.try_connection(ip(3)).unwrap();
        assert_eq!(new.reclaimed, 1);
        assert!(old.reclaimed.is_cancelled(), "the idle one was closed");
        assert!(!busy.reclaimed.is_cancelled(), "a busy one never is");
        assert_eq!(c.connections(), 2);
        // Both open ones are busy or brand new and not idle: refused.
        let _new_query = new.permit.begin();
        assert_eq!(c.try_connection(ip(4)).err(), Some("total"));
        drop(old); // its slot was freed when it was reclaimed
        assert_eq!(c.connections(), 2);
        drop(query);
        assert!(c.try_connection(ip(4)).is_ok());
    }
}
