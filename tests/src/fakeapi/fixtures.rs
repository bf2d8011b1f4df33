//! Object builders for cluster tests.

use serde_json::{Value, json};

/// A ClusterIP Service (one or two `ips` for dual-stack) with named TCP
/// ports `(name, port)`.
pub fn service(namespace: &str, name: &str, ips: &[&str], ports: &[(&str, u16)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ips.first().copied().unwrap_or(""),
            "clusterIPs": ips,
            "ports": ports.iter().map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP"})).collect::<Vec<_>>(),
        }
    })
}

/// A headless Service.
pub fn headless(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
    })
}

/// An IPv4 EndpointSlice for `service`: `(address, hostname, ready)`.
pub fn slice(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>, bool)],
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|(ip, host, ready)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        }).collect::<Vec<_>>(),
    })
}
