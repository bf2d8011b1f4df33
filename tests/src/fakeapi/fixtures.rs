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

/// Namespaces of [`scale_cluster`].
pub const SCALE_NAMESPACES: usize = 100;
/// Endpoints per EndpointSlice of [`scale_cluster`].
pub const SCALE_ENDPOINTS_PER_SERVICE: usize = 5;
/// Every this many services of [`scale_cluster`] one is headless.
pub const SCALE_HEADLESS_EVERY: usize = 5;

/// A big cluster, the shape of the `cluster` tier's scale tests: `services`
/// Services `svc-<i>` in namespace `ns-<i % 100>`, dual-stack ClusterIPs
/// `10.96.<i/256>.<i%256>` and `fd00:96::<i>`, except every fifth, which is
/// headless with endpoint hostnames; each with one EndpointSlice of five
/// ready endpoints. Objects come one at a time, so a caller can apply them
/// without holding them all.
pub fn scale_cluster(services: usize) -> impl Iterator<Item = Value> {
    (0..services).flat_map(|i| {
        let ns = format!("ns-{}", i % SCALE_NAMESPACES);
        let name = format!("svc-{i}");
        let headless = i % SCALE_HEADLESS_EVERY == 0;
        let ips: Vec<String> = if headless {
            vec!["None".into()]
        } else {
            vec![format!("10.96.{}.{}", i / 256, i % 256), format!("fd00:96::{i:x}")]
        };
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
            "spec": {"clusterIP": ips[0], "clusterIPs": ips,
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        });
        let endpoints: Vec<Value> = (0..SCALE_ENDPOINTS_PER_SERVICE)
            .map(|e| {
                let n = i * SCALE_ENDPOINTS_PER_SERVICE + e;
                let mut ep = json!({
                    "addresses": [format!("10.{}.{}.{}", 128 + n / 65536, (n / 256) % 256, n % 256)],
                    "conditions": {"ready": true}
                });
                if headless {
                    ep["hostname"] = json!(format!("pod-{e}"));
                }
                ep
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": ns, "resourceVersion": "1",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        [service, slice]
    })
}
