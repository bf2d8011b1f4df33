//! Indexes of the per-CPU counters array (`MAP_COUNTERS`).

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)+) => {
        /// One slot of the per-CPU counters array. `as u32` is the map index.
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)+];
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Stable snake_case name, used for metrics labels and `inspect`.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)+ }
            }
        }
    };
}

counters! {
    /// Answered from the map with XDP_TX.
    Hit = "hit",
    /// A well-formed query for our address with no entry.
    Miss = "miss",
    /// An entry exists but its lifetime is over.
    Expired = "expired",
    /// Not IPv4/IPv6 UDP to a listen address and port (the bulk of pod traffic).
    PassNotDns = "pass_not_dns",
    /// VLAN-tagged frame.
    PassVlan = "pass_vlan",
    /// IPv4 fragment, or IPv4 options, or an IPv6 extension header.
    PassIpUnsupported = "pass_ip_unsupported",
    /// Truncated or inconsistent IP/UDP/DNS headers.
    PassMalformed = "pass_malformed",
    /// A response, a non-QUERY opcode, TC set, or counts other than one question.
    PassNotQuery = "pass_not_query",
    /// Question class other than IN.
    PassClass = "pass_class",
    /// Name longer than `MAX_NAME_LEN`, or with a compression pointer.
    PassName = "pass_name",
    /// Additional records other than one EDNS0 OPT, EDNS version > 0, or OPT
    /// options other than a lone DNS COOKIE (which is ignored, RFC 7873 5.2).
    PassEdns = "pass_edns",
    /// The answer would not fit the client's UDP size.
    PassTooBig = "pass_too_big",
    /// The entry failed validation (torn read, corrupt entry).
    PassInvalidEntry = "pass_invalid_entry",
    /// The kernel path is disabled in the config map.
    PassDisabled = "pass_disabled",
    /// A kernel helper (adjust_tail, store_bytes) failed.
    PassHelperFailed = "pass_helper_failed",
    /// A UDP checksum the kernel stack would reject: wrong (and not the
    /// partial sum a local socket leaves for offload), or zero over IPv6.
    PassChecksum = "pass_checksum",
    /// A destination MAC address other than the receiving interface's own
    /// (or its bridge's): broadcast, multicast or another host's.
    PassMac = "pass_mac",
    /// A source the stack would not answer: a broadcast, multicast,
    /// loopback or unspecified address, one of the listen addresses, or
    /// port 0.
    PassSource = "pass_source",
}
