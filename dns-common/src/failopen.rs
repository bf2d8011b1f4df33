//! What the kernel needs to fail open when no agent serves
//! (docs/design.md#fail-open): the agent's heartbeat, and the flows whose
//! destination the XDP program moved from a listen address to the cluster
//! DNS Service, so the egress program can give their replies the source
//! the pod asked.

/// How often the agent writes its heartbeat.
pub const HEARTBEAT_INTERVAL_MS: u64 = 250;
/// A heartbeat older than this means no agent serves: three missed beats,
/// so one late wake-up of a loaded agent does not flap.
pub const LIVENESS_TIMEOUT_NS: u64 = 750_000_000;
/// Capacity of the flows map (an LRU hash): failed-open queries whose reply
/// has not come back yet.
pub const FLOWS_CAPACITY: u32 = 16_384;
/// How long a failed-open UDP query waits for its reply: longer than any
/// stub resolver waits (glibc: 5 s).
pub const UDP_FLOW_LIFETIME_NS: u64 = 10_000_000_000;
/// How long a failed-open TCP connection may stay idle; every packet from
/// the pod renews it.
pub const TCP_FLOW_IDLE_NS: u64 = 60_000_000_000;

/// The agent's heartbeat, the single value of its liveness map.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Liveness {
    /// `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns`) of the last
    /// beat; zero before the first one and after a clean stop.
    pub heartbeat_ns: u64,
}

/// Whether an agent serves at `now_ns`, given its liveness.
#[inline(always)]
pub const fn agent_serves(liveness: &Liveness, now_ns: u64) -> bool {
    // Signed: a beat taken on another CPU may read a few ns ahead of now.
    liveness.heartbeat_ns != 0
        && (now_ns as i64).wrapping_sub(liveness.heartbeat_ns as i64) <= LIVENESS_TIMEOUT_NS as i64
}

/// Key of the flows map: the pod's end of a failed-open query, as the
/// reply addresses it. Fields hold network byte order, as in the packet.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FlowKey {
    /// The pod's address; an IPv4 address fills the first 4 bytes.
    pub addr: [u8; 16],
    pub port: u16,
    /// The DNS message ID for UDP (a socket may have several queries out);
    /// zero for TCP.
    pub id: u16,
    /// IP protocol number: 17 (UDP) or 6 (TCP).
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of the flows map: where the pod sent the query and where the
/// XDP program sent it instead.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FlowValue {
    /// The listen address the pod asked; the reply's source becomes this.
    pub listen: [u8; 16],
    /// The cluster DNS address the query went to; only a reply from it is
    /// rewritten.
    pub cluster: [u8; 16],
    /// `CLOCK_BOOTTIME` ns after which the flow is forgotten.
    pub expires_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_times_out() {
        let beat = Liveness {
            heartbeat_ns: 10_000_000_000,
        };
        assert!(agent_serves(&beat, beat.heartbeat_ns));
        assert!(agent_serves(&beat, beat.heartbeat_ns - 5));
        assert!(agent_serves(&beat, beat.heartbeat_ns + LIVENESS_TIMEOUT_NS));
        assert!(!agent_serves(
            &beat,
            beat.heartbeat_ns + LIVENESS_TIMEOUT_NS + 1
        ));
        assert!(!agent_serves(&Liveness::default(), 1));
    }
}
