//! Compact, source-independent views of the Kubernetes objects DNS needs.
//!
//! Both sources (API server and manifests folder) convert `core/v1 Service`
//! and `discovery.k8s.io/v1 EndpointSlice` into these types, so one code path
//! turns them into records. Only the fields DNS uses are kept: at 50k
//! endpoints the full k8s-openapi objects would cost several times more.

use std::mem::{size_of, size_of_val};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why an object cannot be turned into DNS data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("{kind} has no metadata.name")]
    NoName { kind: &'static str },
    #[error("{kind} {key}: {what} {value:?} is not a valid IP address")]
    BadIp {
        kind: &'static str,
        key: String,
        what: &'static str,
        value: String,
    },
    #[error("Service {key}: externalName {value:?} is not a valid DNS name")]
    BadExternalName { key: String, value: String },
    #[error("EndpointSlice {key}: has no {SERVICE_NAME_LABEL} label, so it belongs to no Service")]
    NoServiceLabel { key: String },
}

/// Namespace and name of a Service (or of an EndpointSlice). The strings
/// are shared: the store indexes every object under a few copies of its
/// key, which then cost no allocation of their own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_ascii_lowercase().into(),
            name: name.to_ascii_lowercase().into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An object that is identified by its [`ObjectKey`].
pub trait Keyed {
    fn key(&self) -> &ObjectKey;
}

impl Keyed for ServiceInfo {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

impl Keyed for SliceInfo {
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

/// An object in a hash set under its own key: the set's slot is one
/// pointer, where a map from a copy of the key to the object takes five.
#[derive(Debug)]
pub struct ByKey<T>(pub Arc<T>);

impl<T: Keyed> std::hash::Hash for ByKey<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key().hash(state)
    }
}

impl<T: Keyed> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for ByKey<T> {}

impl<T: Keyed> std::borrow::Borrow<ObjectKey> for ByKey<T> {
    fn borrow(&self) -> &ObjectKey {
        self.0.key()
    }
}

/// What a Service name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// `spec.clusterIPs` (both families when dual-stack). Empty while the
    /// API server has not allocated one yet: the name exists, with no data.
    ClusterIp(Box<[IpAddr]>),
    /// `clusterIP: None`: the addresses come from the EndpointSlices.
    Headless,
    /// `type: ExternalName`: a CNAME to this (absolute) name.
    /// Boxed: a `Name` is some 80 bytes, and every other Service would
    /// carry that room.
    ExternalName(Box<Name>),
}

/// A named port (unnamed ports have no SRV record and are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// Lower-case port name, the `_<name>` label. Shared: the store holds
    /// each distinct name once.
    pub name: Arc<str>,
    /// Lower-case protocol, the `_<proto>` label: tcp, udp or sctp.
    pub protocol: Arc<str>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub key: ObjectKey,
    pub kind: ServiceKind,
    /// Boxed slices, not `Vec`s, here and in [`SliceInfo`]: no spare
    /// capacity, and 8 bytes less each in an object that lives as long as
    /// the cluster.
    pub ports: Box<[NamedPort]>,
    pub publish_not_ready: bool,
}

/// An endpoint. The API allows up to 100 addresses and a hostname, but an
/// endpoint has one address and no hostname in practice (kube-proxy reads
/// only the first address): that address is kept inline and anything else
/// behind one pointer, 32 bytes in all where a field each would take 48
/// (4 MB at 250k endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The only address; unused (unspecified) when `extra` is set.
    ip: IpAddr,
    /// `conditions.ready`; unknown (absent) counts as ready, as the API says.
    pub ready: bool,
    extra: Option<Box<EndpointExtra>>,
}

/// An endpoint's addresses when not exactly one, or its hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointExtra {
    addresses: Box<[IpAddr]>,
    hostname: Option<Box<str>>,
}

impl EndpointInfo {
    /// `hostname` lower case, if set.
    pub fn new(addresses: Vec<IpAddr>, hostname: Option<Box<str>>, ready: bool) -> Self {
        match (addresses.as_slice(), hostname) {
            ([ip], None) => Self {
                ip: *ip,
                ready,
                extra: None,
            },
            (_, hostname) => Self {
                ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                ready,
                extra: Some(Box::new(EndpointExtra {
                    addresses: addresses.into_boxed_slice(),
                    hostname,
                })),
            },
        }
    }

    pub fn addresses(&self) -> &[IpAddr] {
        match &self.extra {
            Some(extra) => &extra.addresses,
            None => std::slice::from_ref(&self.ip),
        }
    }

    /// Lower-case `hostname` of the endpoint, if set.
    pub fn hostname(&self) -> Option<&str> {
        self.extra.as_ref()?.hostname.as_deref()
    }

    /// Heap bytes owned (none for one address without a hostname).
    fn heap_bytes(&self) -> usize {
        self.extra.as_ref().map_or(0, |e| {
            size_of::<EndpointExtra>()
                + size_of_val(&*e.addresses)
                + e.hostname.as_ref().map_or(0, |h| h.len())
        })
    }

    /// Whether DNS publishes this endpoint: ready ones always, the others
    /// (not ready, terminating) only for `publishNotReadyAddresses`.
    pub fn published(&self, svc: &ServiceInfo) -> bool {
        self.ready || svc.publish_not_ready
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub key: ObjectKey,
    /// The Service this slice belongs to (same namespace).
    pub service: ObjectKey,
    pub endpoints: Box<[EndpointInfo]>,
    pub ports: Box<[NamedPort]>,
}

/// Approximate heap + inline size, for the memory metric. It counts what
/// these types own; allocator overhead is not included.
pub trait ApproxBytes {
    fn approx_bytes(&self) -> usize;
}

impl ApproxBytes for ObjectKey {
    fn approx_bytes(&self) -> usize {
        size_of::<Self>() + self.namespace.len() + self.name.len()
    }
}

impl ApproxBytes for NamedPort {
    fn approx_bytes(&self) -> usize {
        size_of::<Self>() + self.name.len() + self.protocol.len()
    }
}

impl ApproxBytes for ServiceInfo {
    fn approx_bytes(&self) -> usize {
        let kind = match &self.kind {
            ServiceKind::ClusterIp(ips) => size_of_val(&**ips),
            ServiceKind::Headless => 0,
            ServiceKind::ExternalName(n) => size_of::<Name>() + n.len(),
        };
        size_of::<Arc<Self>>()
            + size_of::<Self>()
            + self.key.approx_bytes()
            + kind
            + self
                .ports
                .iter()
                .map(ApproxBytes::approx_bytes)
                .sum::<usize>()
    }
}

impl ApproxBytes for SliceInfo {
    fn approx_bytes(&self) -> usize {
        size_of::<Arc<Self>>()
            + size_of::<Self>()
            + self.key.approx_bytes()
            + self.service.approx_bytes()
            + self
                .endpoints
                .iter()
                .map(|e| size_of::<EndpointInfo>() + e.heap_bytes())
                .sum::<usize>()
            + self
                .ports
                .iter()
                .map(ApproxBytes::approx_bytes)
                .sum::<usize>()
    }
}

/// Objects without a namespace (common in hand-written manifests) live in
/// `default`, as `kubectl apply` would put them.
fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// `v` in an allocation of its exact size. A collected `Vec` keeps the
/// room it grew to (four ports' worth for one), and the objects live as
/// long as the cluster does.
pub fn exact<T>(v: Vec<T>) -> Box<[T]> {
    v.into_boxed_slice()
}

fn named_port(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?;
    let port = u16::try_from(port?).ok()?;
    Some(NamedPort {
        name: name.to_ascii_lowercase().into(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase().into(),
        port,
    })
}

fn parse_ip(
    kind: &'static str,
    key: &ObjectKey,
    what: &'static str,
    s: &str,
) -> Result<IpAddr, ModelError> {
    s.parse().map_err(|_| ModelError::BadIp {
        kind,
        key: key.to_string(),
        what,
        value: s.to_string(),
    })
}

impl ServiceInfo {
    pub fn from_service(svc: &Service) -> Result<Self, ModelError> {
        let name = svc
            .metadata
            .name
            .as_deref()
            .ok_or(ModelError::NoName { kind: "Service" })?;
        let key = ObjectKey::new(namespace_of(&svc.metadata), name);
        let spec = svc.spec.clone().unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            let value = spec.external_name.clone().unwrap_or_default();
            let mut target = Name::from_ascii(&value)
                .ok()
                .filter(|n| n.num_labels() > 0)
                .ok_or_else(|| ModelError::BadExternalName {
                    key: key.to_string(),
                    value: value.clone(),
                })?;
            target.set_fqdn(true);
            ServiceKind::ExternalName(Box::new(target.to_lowercase()))
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            // clusterIPs (dual-stack) when set, else the older single field.
            let raw: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
                (Some(ips), _) if !ips.is_empty() => ips.clone(),
                (_, Some(ip)) if !ip.is_empty() => vec![ip.clone()],
                _ => Vec::new(),
            };
            if raw.iter().any(|ip| ip == "None") {
                ServiceKind::Headless
            } else {
                let mut ips = raw
                    .iter()
                    .map(|ip| parse_ip("Service", &key, "clusterIP", ip))
                    .collect::<Result<Vec<_>, _>>()?;
                ips.dedup();
                ServiceKind::ClusterIp(exact(ips))
            }
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
            .collect();
        let ports = exact(ports);
        Ok(Self {
            key,
            kind,
            ports,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
        })
    }
}

impl SliceInfo {
    pub fn from_slice(slice: &EndpointSlice) -> Result<Self, ModelError> {
        let name = slice.metadata.name.as_deref().ok_or(ModelError::NoName {
            kind: "EndpointSlice",
        })?;
        let namespace = namespace_of(&slice.metadata);
        let key = ObjectKey::new(namespace, name);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ModelError::NoServiceLabel {
                key: key.to_string(),
            })?;
        let service = ObjectKey::new(namespace, service);
        // FQDN slices carry names, not addresses; DNS has nothing to publish.
        let fqdn = slice.address_type == "FQDN";
        let mut endpoints = Vec::with_capacity(slice.endpoints.len());
        for ep in slice.endpoints.iter().filter(|_| !fqdn) {
            let addresses = ep
                .addresses
                .iter()
                .map(|a| parse_ip("EndpointSlice", &key, "endpoint address", a))
                .collect::<Result<Vec<_>, _>>()?;
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let hostname = ep
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| h.to_ascii_lowercase().into());
            endpoints.push(EndpointInfo::new(addresses, hostname, ready));
        }
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| named_port(p.name.as_deref(), p.protocol.as_deref(), p.port))
            .collect();
        let ports = exact(ports);
        Ok(Self {
            key,
            service,
            endpoints: exact(endpoints),
            ports,
        })
    }
}
