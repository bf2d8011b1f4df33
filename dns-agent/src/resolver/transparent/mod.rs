//! Transparent mode's userspace half (docs/design.md#transparent-mode): the
//! queries to a cluster DNS address that the kernel could not answer come
//! from this agent's ring buffer (the XDP program dropped them from the
//! stack), are answered by the same [`Handler`] as every other query, and
//! go back as whole Ethernet frames on the interface they came in on,
//! through an `AF_PACKET` socket: no netfilter, no conntrack, no kube-proxy
//! on either way.
//!
//! The task that reads the ring also beats the heartbeat
//! (docs/design.md#liveness), so the kernel fails open as soon as this
//! task stops: the process killed, stopped (SIGSTOP) or its runtime wedged.
//!
//! Bounds: the ring's size ([`dns_common::transparent::RING_BYTES`]) and
//! `--max-concurrent`, shared with the UDP and TCP listeners. Without a
//! permit the records wait in the ring; once it is full the kernel sends
//! new queries to the cluster DNS Service instead (`pass_ring_full`).

mod frame;

use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{Handler, Transport};
use super::listen::drain_in_flight;
use crate::fastpath::Heartbeat;
use crate::kernel::packet::PacketSocket;
use dns_common::failopen::HEARTBEAT_INTERVAL_MS;
pub use frame::{FrameError, Query};

/// On shutdown, records still read from the ring and answered at most.
const DRAIN_MAX: usize = 4096;
/// On shutdown, how long answers in progress may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// What the transparent path needs from the fast path.
pub struct TransparentPath {
    pub ring: RingBuf<MapData>,
    pub heartbeat: Heartbeat,
    /// Where answers leave; `None` with `--transparent=false`, where only
    /// the heartbeat runs (the kernel fills no ring then).
    pub socket: Option<PacketSocket>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `nodedns_transparent_queries_total{result}`.
pub struct TransparentMetrics {
    queries: Family<ResultLabels, Counter>,
}

impl TransparentMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let queries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "transparent_queries",
            "Queries to a cluster DNS address handed to the agent by the kernel, by result: \
             answered, invalid (frame refused), unanswered (no response, such as for a response \
             sent as a query), send_failed",
            queries.clone(),
        );
        Self { queries }
    }

    fn count(&self, result: &'static str) {
        self.queries.get_or_create(&ResultLabels { result }).inc();
    }
}

/// Reads the ring and beats the heartbeat until `cancel` fires, then
/// answers what is left (within bounds) and stops beating.
pub async fn serve(
    path: TransparentPath,
    handler: Arc<Handler>,
    queries: Arc<Semaphore>,
    metrics: Arc<TransparentMetrics>,
    cancel: CancellationToken,
) {
    let TransparentPath {
        ring,
        heartbeat,
        socket,
    } = path;
    let mut ring = match crate::kernel::bpf::watch_ring(ring) {
        Ok(ring) => ring,
        Err(error) => {
            // Without the reader no beat either: the kernel keeps failing
            // open, which answers every query, only not on the node.
            tracing::error!(%error, "cannot watch the transparent ring; queries to the cluster DNS address go to the cluster DNS Service");
            return;
        }
    };
    let socket = socket.map(Arc::new);
    let in_flight = TaskTracker::new();
    let mut beat = tokio::time::interval(Duration::from_millis(HEARTBEAT_INTERVAL_MS));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("transparent path serving; heartbeat on");
    loop {
        // A permit before a record: without one the records wait in the
        // ring, and the kernel fails open once it is full.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => {
                heartbeat.beat();
                continue;
            }
            p = queries.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let record = loop {
            if let Some(item) = ring.get_mut().next() {
                break Some(item.to_vec());
            }
            tokio::select! {
                _ = cancel.cancelled() => break None,
                _ = beat.tick() => heartbeat.beat(),
                guard = ring.readable_mut() => match guard {
                    // Checked empty just before: clearing cannot lose a wake-up.
                    Ok(mut guard) => guard.clear_ready(),
                    Err(error) => {
                        tracing::error!(%error, "waiting on the transparent ring failed");
                        break None;
                    }
                },
            }
        };
        let Some(record) = record else { break };
        spawn_answer(&in_flight, record, &handler, &socket, &metrics, permit);
    }
    // Fail open now rather than after the timeout: whatever still runs our
    // program sends its misses to the cluster DNS Service from here on.
    heartbeat.stop();
    drain(
        ring.get_mut(),
        &queries,
        &in_flight,
        &handler,
        &socket,
        &metrics,
    )
    .await;
}

fn spawn_answer(
    in_flight: &TaskTracker,
    record: Vec<u8>,
    handler: &Arc<Handler>,
    socket: &Option<Arc<PacketSocket>>,
    metrics: &Arc<TransparentMetrics>,
    permit: OwnedSemaphorePermit,
) {
    let Some(socket) = socket.clone() else {
        metrics.count("send_failed");
        return;
    };
    let (handler, metrics) = (handler.clone(), metrics.clone());
    in_flight.spawn(async move {
        answer(&record, &handler, &socket, &metrics).await;
        drop(permit);
    });
}

async fn answer(
    record: &[u8],
    handler: &Handler,
    socket: &PacketSocket,
    metrics: &TransparentMetrics,
) {
    let query = match Query::parse(record) {
        Ok(query) => query,
        Err(error) => {
            tracing::debug!(%error, "transparent record refused");
            metrics.count("invalid");
            return;
        }
    };
    let Some(response) = handler
        .handle(query.dns, Transport::Udp, query.src.is_ipv6())
        .await
    else {
        metrics.count("unanswered");
        return;
    };
    match socket.send(query.ifindex, &query.reply(&response)) {
        Ok(()) => metrics.count("answered"),
        Err(error) => {
            tracing::debug!(%error, ifindex = query.ifindex, client = %query.src, "sending a transparent answer failed");
            metrics.count("send_failed");
        }
    }
}

/// Answers what the ring still holds (the kernel put it there before the
/// heartbeat stopped), and waits for answers in progress, both bounded.
async fn drain(
    ring: &mut RingBuf<MapData>,
    queries: &Arc<Semaphore>,
    in_flight: &TaskTracker,
    handler: &Arc<Handler>,
    socket: &Option<Arc<PacketSocket>>,
    metrics: &Arc<TransparentMetrics>,
) {
    let mut drained = 0;
    while drained < DRAIN_MAX {
        let Ok(permit) = queries.clone().try_acquire_owned() else {
            break;
        };
        let Some(item) = ring.next() else { break };
        let record = item.to_vec();
        drop(item);
        spawn_answer(in_flight, record, handler, socket, metrics, permit);
        drained += 1;
    }
    drain_in_flight(in_flight, DRAIN_TIMEOUT, "transparent").await;
    tracing::debug!(drained, "transparent path drained");
}
