//! The synthetic cluster every contender serves: Services written as
//! manifests for the agent, the same records as local data for dnsmasq and
//! unbound, external names for the local upstream, and the query file.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

pub const ZONE: &str = "cluster.local";
/// The namespace of the pod dnsperf plays (its search list starts there).
pub const POD_NAMESPACE: &str = "default";
const NAMESPACES: usize = 20;
/// Hot lookups: a few services in the pod's namespace, a few in others and
/// a few external names (the names an application keeps asking for).
const HOT_SAME_NS: usize = 8;
const HOT_OTHER_NS: usize = 4;
const HOT_EXTERNAL: usize = 4;
/// Share of lookups that go to the hot set; the rest is a uniform cold tail.
const HOT_SHARE: f64 = 0.9;
/// Lookups in the query file (each expands into 2 to 8 queries).
const LOOKUPS: usize = 4_000;
/// External names in the upstream (the hot ones come first).
const EXTERNALS: usize = 64;
const SEED: u64 = 7;
/// Services per manifest file: a file stays well under the agent's size
/// limit (64 MiB) even with endpoints.
const SERVICES_PER_FILE: usize = 10_000;

pub struct Service {
    pub name: String,
    pub namespace: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Service {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.{ZONE}", self.name, self.namespace)
    }
}

pub struct External {
    pub name: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

pub struct Cluster {
    pub services: Vec<Service>,
    pub externals: Vec<External>,
    /// Ready endpoints per Service, in one EndpointSlice each (the agent's
    /// manifests only; the peers serve Service names).
    pub endpoints_per_service: usize,
}

impl Cluster {
    /// `count` dual-stack ClusterIP services; service `i` lives in
    /// namespace `default` when `i % NAMESPACES == 0`, else `ns-<i % NAMESPACES>`.
    pub fn new(count: usize) -> Self {
        let services = (0..count)
            .map(|i| {
                let n = i + 1;
                let ns = i % NAMESPACES;
                Service {
                    name: format!("svc-{i}"),
                    namespace: if ns == 0 {
                        POD_NAMESPACE.to_string()
                    } else {
                        format!("ns-{ns}")
                    },
                    v4: Ipv4Addr::new(10, 96 + (n >> 16) as u8, (n >> 8) as u8, n as u8),
                    v6: Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, (n >> 16) as u16, n as u16),
                }
            })
            .collect();
        let externals = (0..EXTERNALS)
            .map(|i| External {
                name: format!("ext-{i}.example.com"),
                v4: Ipv4Addr::new(203, 0, 113, i as u8 + 1),
                v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1),
            })
            .collect();
        Self {
            services,
            externals,
            endpoints_per_service: 0,
        }
    }

    /// `count` services, each with `per_service` ready endpoints.
    pub fn with_endpoints(count: usize, per_service: usize) -> Self {
        Self {
            endpoints_per_service: per_service,
            ..Self::new(count)
        }
    }

    /// One multi-document YAML file (each document in JSON flow style, which
    /// is YAML) of Services, as `--manifests` reads it.
    pub fn write_manifests(&self, dir: &Path) -> Result<()> {
        self.write_manifests_with(dir, None)
    }

    /// Like [`Self::write_manifests`], with service `changed.0` moved to the
    /// ClusterIP `changed.1` (the update-propagation test).
    pub fn write_manifests_with(
        &self,
        dir: &Path,
        changed: Option<(usize, Ipv4Addr)>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (f, chunk) in self.services.chunks(SERVICES_PER_FILE).enumerate() {
            let mut text = String::with_capacity(chunk.len() * 900);
            for (j, s) in chunk.iter().enumerate() {
                let i = f * SERVICES_PER_FILE + j;
                let v4 = match changed {
                    Some((c, ip)) if c == i => ip,
                    _ => s.v4,
                };
                text.push_str("---\n");
                text.push_str(&service_manifest(s, v4, s.v6).to_string());
                text.push('\n');
                if self.endpoints_per_service > 0 {
                    let first = i * self.endpoints_per_service;
                    let slice = slice_manifest(s, first..first + self.endpoints_per_service);
                    text.push_str("---\n");
                    text.push_str(&slice.to_string());
                    text.push('\n');
                }
            }
            write_atomically(&dir.join(format!("services-{f:03}.yaml")), &text)?;
        }
        Ok(())
    }

    /// dnsmasq configuration lines for the cluster records.
    pub fn dnsmasq_records(&self) -> String {
        let mut out = format!("local=/{ZONE}/\ntxt-record=dns-version.{ZONE},\"1.1.0\"\n");
        for s in &self.services {
            let _ = writeln!(out, "host-record={},{},{}", s.fqdn(), s.v4, s.v6);
        }
        out
    }

    /// unbound `server:` clause lines for the cluster records.
    pub fn unbound_records(&self, ttl: u32) -> String {
        let mut out = format!(
            "  local-zone: \"{ZONE}.\" static\n  local-data: \"dns-version.{ZONE}. {ttl} IN TXT \\\"1.1.0\\\"\"\n"
        );
        for s in &self.services {
            let name = s.fqdn();
            let _ = writeln!(out, "  local-data: \"{name}. {ttl} IN A {}\"", s.v4);
            let _ = writeln!(out, "  local-data: \"{name}. {ttl} IN AAAA {}\"", s.v6);
        }
        out
    }

    /// `--address` arguments of the upstream that owns the external names.
    pub fn upstream_args(&self) -> Vec<String> {
        self.externals
            .iter()
            .flat_map(|e| {
                [
                    format!("--address=/{}/{}", e.name, e.v4),
                    format!("--address=/{}/{}", e.name, e.v6),
                ]
            })
            .collect()
    }

    /// The dnsperf input: lookups as a pod's resolver expands them with
    /// `search <ns>.svc.<zone> svc.<zone> <zone>` and `ndots:5`, A then AAAA,
    /// mostly from a hot set, with a uniform cold tail.
    pub fn query_file(&self) -> String {
        let same_ns: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| s.namespace == POD_NAMESPACE)
            .collect();
        let other_ns: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| s.namespace != POD_NAMESPACE)
            .collect();
        let hot: Vec<String> = same_ns
            .iter()
            .take(HOT_SAME_NS)
            .map(|s| s.name.clone())
            .chain(
                other_ns
                    .iter()
                    .take(HOT_OTHER_NS)
                    .map(|s| format!("{}.{}", s.name, s.namespace)),
            )
            .chain(
                self.externals
                    .iter()
                    .take(HOT_EXTERNAL)
                    .map(|e| e.name.clone()),
            )
            .collect();
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut out = String::new();
        for _ in 0..LOOKUPS {
            let target = if rng.random_bool(HOT_SHARE) {
                hot[rng.random_range(0..hot.len())].clone()
            } else {
                let pick = rng.random_range(0..self.services.len() + self.externals.len());
                match self.services.get(pick) {
                    Some(s) if s.namespace == POD_NAMESPACE => s.name.clone(),
                    Some(s) => format!("{}.{}", s.name, s.namespace),
                    None => self.externals[pick - self.services.len()].name.clone(),
                }
            };
            for qtype in ["A", "AAAA"] {
                for name in expand(&target) {
                    let _ = writeln!(out, "{name} {qtype}");
                }
            }
        }
        out
    }
}

/// The names a stub resolver asks for `target` until one answers: every
/// search domain in turn, then the name itself. The lab's records make the
/// first hit the last name tried, as in a cluster.
fn expand(target: &str) -> Vec<String> {
    let search = [
        format!("{POD_NAMESPACE}.svc.{ZONE}"),
        format!("svc.{ZONE}"),
        ZONE.to_string(),
    ];
    let dots = target.matches('.').count();
    let mut names = Vec::new();
    match dots {
        // `svc`: found in the pod's namespace at once.
        0 => names.push(format!("{target}.{}", search[0])),
        // `svc.ns`: NXDOMAIN in <ns>.svc, found under svc.<zone>.
        1 => names.extend(search[..2].iter().map(|d| format!("{target}.{d}"))),
        // External: every search domain fails, then the name itself.
        _ => {
            names.extend(search.iter().map(|d| format!("{target}.{d}")));
            names.push(target.to_string());
        }
    }
    names
}

pub fn service_manifest(s: &Service, v4: Ipv4Addr, v6: Ipv6Addr) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": s.name, "namespace": s.namespace, "resourceVersion": "1"},
        "spec": {
            "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"],
            "clusterIP": v4.to_string(), "clusterIPs": [v4.to_string(), v6.to_string()],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
        }
    })
}

/// Endpoint `k` of the cluster: pod addresses from 10.128.0.0/9.
fn endpoint_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 128 + (k >> 16) as u8, (k >> 8) as u8, k as u8)
}

/// The EndpointSlice of `s` with the ready endpoints `range`.
pub fn slice_manifest(s: &Service, range: std::ops::Range<usize>) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = range
        .map(|k| json!({"addresses": [endpoint_ip(k).to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-abcde", s.name), "namespace": s.namespace, "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": s.name}
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

/// Writes through a temporary file and a rename, so a watcher never reads a
/// half-written manifest.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    // Next to the watched folder, not in it: the agent reads every file there.
    let dir = path.parent().context("a manifest path has a folder")?;
    let tmp = dir.with_extension("staging");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename onto {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_ndots_5() {
        assert_eq!(expand("web"), ["web.default.svc.cluster.local"]);
        assert_eq!(expand("db.shop").len(), 2);
        assert_eq!(expand("api.example.com").last().unwrap(), "api.example.com");
        assert_eq!(expand("api.example.com").len(), 4);
    }
}
