//! Which servers a forwarded name goes to, and which of them are healthy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

use super::args::StubDomain;
use crate::zone::ForwardPolicy;

/// Consecutive failures after which an upstream is tried last.
const FAILURES_BEFORE_DOWN: u32 = 3;
/// How long a failing upstream stays at the back of the line.
const DOWN_FOR: Duration = Duration::from_secs(5);
/// Upstreams whose health is remembered (policies can change live).
const MAX_TRACKED_UPSTREAMS: usize = 256;

/// The `nameserver` lines of a resolv.conf, minus `own` addresses (ours, so
/// that the agent never forwards to itself).
pub fn from_resolv_conf(text: &str, own: &[IpAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A zone index (fe80::1%eth0) cannot be parsed by IpAddr: skip it.
            words.next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| !own.contains(ip) && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Where a forwarded name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub servers: Vec<SocketAddr>,
    /// What the servers answer for, their bailiwick: the stub domain, or
    /// the root for the default upstreams (recursive servers).
    pub zone: Name,
}

/// The servers for `name`: the longest matching stub domain (from the live
/// policy or the flags), else the policy's upstreams, else the defaults.
pub fn route(
    name: &Name,
    policy: &ForwardPolicy,
    stubs: &[StubDomain],
    defaults: &[SocketAddr],
) -> Route {
    let mut best: Option<(&Name, Vec<SocketAddr>)> = None;
    let candidates = policy
        .stub_domains
        .iter()
        .map(|(zone, servers)| (zone, servers.clone()))
        .chain(stubs.iter().map(|s| (&s.zone, vec![s.server])));
    for (zone, servers) in candidates {
        if zone.zone_of(name)
            && best
                .as_ref()
                .is_none_or(|(z, _)| zone.num_labels() > z.num_labels())
        {
            best = Some((zone, servers));
        }
    }
    match best {
        Some((zone, servers)) => Route {
            servers,
            zone: zone.to_lowercase(),
        },
        None => Route {
            servers: if policy.upstreams.is_empty() {
                defaults.to_vec()
            } else {
                policy.upstreams.clone()
            },
            zone: Name::root(),
        },
    }
}

#[derive(Default, Clone, Copy)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

/// Failure tracking per upstream: a server that keeps failing is tried after
/// the healthy ones until it answers again.
#[derive(Default)]
pub struct UpstreamHealth {
    states: Mutex<HashMap<SocketAddr, Health>>,
}

impl UpstreamHealth {
    /// `servers` with the healthy ones first, each group in configured order.
    pub fn order(&self, servers: &[SocketAddr]) -> Vec<SocketAddr> {
        let now = Instant::now();
        let states = self.states.lock().unwrap();
        let down = |s: &SocketAddr| {
            states
                .get(s)
                .and_then(|h| h.down_until)
                .is_some_and(|until| until > now)
        };
        let (mut up, downs): (Vec<_>, Vec<_>) = servers.iter().partition(|s| !down(s));
        up.extend(downs);
        up
    }

    pub fn success(&self, server: SocketAddr) {
        self.states.lock().unwrap().remove(&server);
    }

    pub fn failure(&self, server: SocketAddr) {
        let mut states = self.states.lock().unwrap();
        if states.len() >= MAX_TRACKED_UPSTREAMS && !states.contains_key(&server) {
            states.clear();
        }
        let health = states.entry(server).or_default();
        health.failures += 1;
        if health.failures >= FAILURES_BEFORE_DOWN {
            health.down_until = Some(Instant::now() + DOWN_FOR);
        }
    }

    pub fn is_down(&self, server: SocketAddr) -> bool {
        let states = self.states.lock().unwrap();
        states
            .get(&server)
            .and_then(|h| h.down_until)
            .is_some_and(|u| u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn resolv_conf_skips_own_addresses() {
        let text = "search x\nnameserver 169.254.20.10\nnameserver 10.0.0.2\n#nameserver 1.1.1.1\nnameserver fd00::2\n";
        let own = ["169.254.20.10".parse().unwrap()];
        assert_eq!(
            from_resolv_conf(text, &own),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fd00::2]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn longest_stub_domain_wins() {
        let a: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let d: SocketAddr = "10.0.0.9:53".parse().unwrap();
        let policy = ForwardPolicy {
            stub_domains: vec![(name("corp.example."), vec![a])],
            upstreams: vec![],
        };
        let stubs = [StubDomain {
            zone: name("dev.corp.example."),
            server: b,
        }];
        let r = route(&name("x.dev.corp.example."), &policy, &stubs, &[d]);
        assert_eq!((r.servers, r.zone), (vec![b], name("dev.corp.example.")));
        let r = route(&name("x.corp.example."), &policy, &stubs, &[d]);
        assert_eq!((r.servers, r.zone), (vec![a], name("corp.example.")));
        let r = route(&name("example.org."), &policy, &stubs, &[d]);
        assert_eq!((r.servers, r.zone), (vec![d], Name::root()));
    }

    #[test]
    fn failing_upstream_goes_last() {
        let a: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let health = UpstreamHealth::default();
        for _ in 0..FAILURES_BEFORE_DOWN {
            health.failure(a);
        }
        assert_eq!(health.order(&[a, b]), vec![b, a]);
        health.success(a);
        assert_eq!(health.order(&[a, b]), vec![a, b]);
    }
}
