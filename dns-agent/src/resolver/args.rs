//! The resolver's flags. Defaults follow NodeLocal DNSCache / CoreDNS where
//! users already know them (docs/design.md#defaults); every bound is a flag
//! here or a named constant next to the code it bounds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::Name;

/// One `--stub-domain ZONE=IP[:PORT]`: names under `zone` go to `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubDomain {
    pub zone: Name,
    pub server: SocketAddr,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResolverArgs {
    /// Address to answer DNS on, UDP and TCP (repeatable, IPv4 or IPv6).
    #[arg(
        long = "listen",
        value_name = "IP",
        env = "NODEDNS_LISTEN",
        value_delimiter = ',',
        default_value = "169.254.20.10"
    )]
    pub listen: Vec<IpAddr>,

    /// DNS port on every listen address.
    #[arg(long, env = "NODEDNS_PORT", default_value_t = 53)]
    pub port: u16,

    /// Interface that carries the listen addresses. It is created as a
    /// `dummy` link; where the kernel has no `dummy` type the addresses go on
    /// `lo` instead (logged).
    #[arg(long, env = "NODEDNS_LISTEN_INTERFACE", default_value = "nodedns0")]
    pub listen_interface: String,

    /// Use listen addresses that already exist; create and remove nothing.
    #[arg(long, env = "NODEDNS_NO_CREATE_INTERFACE")]
    pub no_create_interface: bool,

    /// Upstream server for names outside the cluster zone (repeatable).
    /// Default: the nameservers of --resolv-conf, minus our own addresses.
    #[arg(long = "upstream", value_name = "IP[:PORT]", env = "NODEDNS_UPSTREAM",
          value_delimiter = ',', value_parser = parse_server)]
    pub upstreams: Vec<SocketAddr>,

    /// Where the default upstreams come from.
    #[arg(long, env = "NODEDNS_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// Send a zone to its own server (repeatable; the longest suffix wins).
    #[arg(long = "stub-domain", value_name = "ZONE=IP[:PORT]", env = "NODEDNS_STUB_DOMAIN",
          value_delimiter = ',', value_parser = parse_stub_domain)]
    pub stub_domains: Vec<StubDomain>,

    /// Most answers the forwarding cache holds (positive and negative).
    #[arg(long, env = "NODEDNS_CACHE_ENTRIES", default_value_t = 10_000)]
    pub cache_entries: usize,

    /// Most bytes (wire size of the cached records) the cache holds.
    #[arg(long, env = "NODEDNS_CACHE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub cache_bytes: usize,

    /// Longest time a positive upstream answer is cached, in seconds.
    #[arg(long, env = "NODEDNS_CACHE_MAX_SUCCESS_TTL", default_value_t = 30)]
    pub cache_max_success_ttl: u32,

    /// Longest time NXDOMAIN/NODATA is cached (RFC 2308 TTL from the SOA,
    /// clamped to this), in seconds.
    #[arg(long, env = "NODEDNS_CACHE_MAX_DENIAL_TTL", default_value_t = 5)]
    pub cache_max_denial_ttl: u32,

    /// How long an upstream failure (SERVFAIL) is cached, in seconds.
    #[arg(long, env = "NODEDNS_CACHE_SERVFAIL_TTL", default_value_t = 5)]
    pub cache_servfail_ttl: u32,

    /// Answer expired data when upstreams fail (RFC 8767).
    #[arg(long, env = "NODEDNS_SERVE_STALE", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub serve_stale: bool,

    /// TTL of a stale answer, in seconds.
    #[arg(long, env = "NODEDNS_SERVE_STALE_TTL", default_value_t = 30)]
    pub serve_stale_ttl: u32,

    /// How long to try upstreams before answering stale data, in milliseconds.
    #[arg(long, env = "NODEDNS_SERVE_STALE_AFTER_MS", default_value_t = 1800)]
    pub serve_stale_after_ms: u64,

    /// After a failed refresh, answer stale data without asking upstreams
    /// again for this many seconds (RFC 8767 failure recheck timer).
    #[arg(long, env = "NODEDNS_SERVE_STALE_RECHECK_SECS", default_value_t = 30)]
    pub serve_stale_recheck_secs: u64,

    /// How long expired data stays available for serve-stale, in seconds.
    #[arg(long, env = "NODEDNS_SERVE_STALE_MAX_AGE", default_value_t = 86_400)]
    pub serve_stale_max_age: u64,

    /// Refresh popular cache entries before they expire.
    #[arg(long, env = "NODEDNS_PREFETCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub prefetch: bool,

    /// An entry is popular once it has been hit this many times.
    #[arg(long, env = "NODEDNS_PREFETCH_HITS", default_value_t = 3)]
    pub prefetch_hits: u32,

    /// Prefetch when less than this percentage of the TTL is left.
    #[arg(long, env = "NODEDNS_PREFETCH_PERCENT", default_value_t = 10)]
    pub prefetch_percent: u8,

    /// Time to wait for one upstream's reply before trying the next, in ms.
    #[arg(long, env = "NODEDNS_UPSTREAM_TIMEOUT_MS", default_value_t = 1500)]
    pub upstream_timeout_ms: u64,

    /// Upstream queries in flight at once; beyond it clients get SERVFAIL
    /// instead of waiting in a queue.
    #[arg(long, env = "NODEDNS_MAX_OUTSTANDING", default_value_t = 1024)]
    pub max_outstanding: usize,

    /// Upstream queries in flight at once for one zone (a stub domain, or a
    /// name's last two labels) once half of --max-outstanding is in use, so
    /// a zone whose servers never answer cannot take the whole of it.
    #[arg(long, env = "NODEDNS_MAX_OUTSTANDING_PER_ZONE", default_value_t = 128)]
    pub max_outstanding_per_zone: usize,

    /// Upstream queries in flight at once to one upstream server, so a dead
    /// server cannot take the whole --max-outstanding.
    #[arg(
        long,
        env = "NODEDNS_MAX_OUTSTANDING_PER_UPSTREAM",
        default_value_t = 768
    )]
    pub max_outstanding_per_upstream: usize,

    /// Randomise the case of the names sent upstream and require the same
    /// case back (DNS 0x20), so a forged reply must guess it too.
    #[arg(long = "upstream-0x20", env = "NODEDNS_UPSTREAM_0X20", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub upstream_0x20: bool,

    /// Upstream replies not matching their query (wrong ID, name, case or
    /// question) after which the query is asked again over TCP, as spoofing
    /// is suspected (0 never falls back).
    #[arg(long, env = "NODEDNS_UPSTREAM_SPOOF_THRESHOLD", default_value_t = 1)]
    pub upstream_spoof_threshold: u32,

    /// Once spoofing is suspected at an upstream, ask it over TCP only for
    /// this many seconds (0: only the query that saw it).
    #[arg(long, env = "NODEDNS_UPSTREAM_SPOOF_TCP_SECS", default_value_t = 60)]
    pub upstream_spoof_tcp_secs: u64,

    /// Client queries being answered at once (UDP and TCP together).
    #[arg(long, env = "NODEDNS_MAX_CONCURRENT", default_value_t = 4096)]
    pub max_concurrent: usize,

    /// Queries being answered at once for one client (source address) once
    /// half of --max-concurrent is in use; more get SERVFAIL at once, so one
    /// pod cannot take --max-concurrent.
    #[arg(long, env = "NODEDNS_MAX_CONCURRENT_PER_CLIENT", default_value_t = 256)]
    pub max_concurrent_per_client: usize,

    /// Close an idle TCP connection after this many milliseconds (RFC 7766).
    #[arg(long, env = "NODEDNS_TCP_IDLE_TIMEOUT_MS", default_value_t = 10_000)]
    pub tcp_idle_timeout_ms: u64,

    /// Open TCP connections at once. Near the limit the longest idle ones
    /// are closed to make room; when none is idle, new connections are
    /// closed at once.
    #[arg(long, env = "NODEDNS_TCP_MAX_CONNECTIONS", default_value_t = 512)]
    pub tcp_max_connections: usize,

    /// Open TCP connections at once from one client (source address);
    /// further ones are closed at once.
    #[arg(
        long,
        env = "NODEDNS_TCP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    pub tcp_max_connections_per_client: usize,

    /// An upstream answer is promoted to the kernel once asked more than this
    /// many times within --hot-window-secs (0 promotes every answer).
    /// Cluster answers, positive and negative, are always promoted.
    #[arg(long, env = "NODEDNS_HOT_THRESHOLD", default_value_t = 1)]
    pub hot_threshold: u32,

    /// The window of --hot-threshold, in seconds.
    #[arg(long, env = "NODEDNS_HOT_WINDOW_SECS", default_value_t = 10)]
    pub hot_window_secs: u64,

    /// Lifetime of a cluster-zone entry in the kernel map, in seconds. The
    /// agent re-derives the entries on every zone change and renews them
    /// before they expire; the lifetime bounds how long a stopped agent's
    /// kernel keeps answering.
    #[arg(long, env = "NODEDNS_CLUSTER_ENTRY_LIFETIME", default_value_t = 120)]
    pub cluster_entry_lifetime_secs: u64,

    /// Prometheus `/metrics` address (NodeLocal DNSCache's port).
    #[arg(long, env = "NODEDNS_METRICS_ADDR",
          default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9253))]
    pub metrics_addr: SocketAddr,

    /// `/healthz` and `/readyz` address. Not 8080, which clashes with other
    /// node agents; loopback because kubelet probes a hostNetwork pod on the
    /// node itself (httpGet.host: 127.0.0.1), so nothing else needs to reach it.
    #[arg(long, env = "NODEDNS_HEALTH_ADDR",
          default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9254))]
    pub health_addr: SocketAddr,
}

/// Parses the resolver's flags alone (tests and tools; `dns-agent run`
/// flattens [`ResolverArgs`] into its own command).
#[derive(clap::Parser)]
struct OnlyResolver {
    #[command(flatten)]
    args: ResolverArgs,
}

impl ResolverArgs {
    /// The flags in `argv` (without a program name), defaults for the rest.
    pub fn from_flags<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let argv = std::iter::once(std::ffi::OsString::from("resolver"))
            .chain(argv.into_iter().map(Into::into));
        Ok(OnlyResolver::try_parse_from(argv)?.args)
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }
    pub fn serve_stale_after(&self) -> Duration {
        Duration::from_millis(self.serve_stale_after_ms)
    }
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.tcp_idle_timeout_ms)
    }
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; the port defaults to 53.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{s}` is not IP, IP:PORT or [IPv6]:PORT"))
}

/// `ZONE=IP[:PORT]`.
pub fn parse_stub_domain(s: &str) -> Result<StubDomain, String> {
    let (zone, server) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ZONE=IP[:PORT]"))?;
    let mut zone = Name::from_utf8(zone.trim()).map_err(|e| format!("zone `{zone}`: {e}"))?;
    zone.set_fqdn(true);
    Ok(StubDomain {
        zone: zone.to_lowercase(),
        server: parse_server(server.trim())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_default_to_port_53() {
        assert_eq!(
            parse_server("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("10.0.0.1:5353").unwrap(),
            "10.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("fd00::1").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("[fd00::1]:99").unwrap(),
            "[fd00::1]:99".parse().unwrap()
        );
        assert!(parse_server("example").is_err());
    }

    #[test]
    fn defaults_match_the_design() {
        let a = ResolverArgs::from_flags(Vec::<String>::new()).unwrap();
        assert_eq!(a.listen, vec!["169.254.20.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.port, 53);
        assert_eq!(a.listen_interface, "nodedns0");
        assert_eq!(
            (
                a.cache_max_success_ttl,
                a.cache_max_denial_ttl,
                a.cache_servfail_ttl
            ),
            (30, 5, 5)
        );
        assert!(a.serve_stale && a.prefetch);
        assert_eq!(a.metrics_addr.port(), 9253);
        assert_ne!(a.health_addr.port(), 8080);
        let a = ResolverArgs::from_flags([
            "--listen",
            "127.0.0.1",
            "--listen",
            "::1",
            "--serve-stale",
            "false",
        ])
        .unwrap();
        assert_eq!(a.listen.len(), 2);
        assert!(!a.serve_stale);
    }

    #[test]
    fn stub_domain_parses() {
        let s = parse_stub_domain("Corp.Example=10.1.1.1:5300").unwrap();
        assert_eq!(s.zone, Name::from_ascii("corp.example.").unwrap());
        assert_eq!(s.server, "10.1.1.1:5300".parse().unwrap());
        assert!(parse_stub_domain("corp.example").is_err());
    }
}
