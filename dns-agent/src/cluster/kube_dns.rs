//! The default of `--cluster-dns-ip` with the API-server source: the
//! ClusterIPs of Service `kube-system/kube-dns`, the name every cluster
//! DNS (kube-dns, CoreDNS) is reached by, read with one `get` of that one
//! Service (the RBAC rule in `deploy/rbac.yaml` allows exactly that).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// The cluster DNS Service.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
/// Waits between attempts while the Service cannot be read: doubling from
/// the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KubeDnsError {
    #[error(
        "cannot read Service {NAMESPACE}/{NAME}: {0} (check the agent's RBAC `get` on it, or pass \
         --cluster-dns-ip)"
    )]
    Get(#[from] kube::Error),
    #[error("Service {NAMESPACE}/{NAME} has no ClusterIP (headless?): pass --cluster-dns-ip")]
    NoClusterIp,
}

/// The Service's ClusterIPs, both families when it is dual-stack.
pub async fn cluster_dns_addresses(client: Client) -> Result<Vec<IpAddr>, KubeDnsError> {
    let service = Api::<Service>::namespaced(client, NAMESPACE)
        .get(NAME)
        .await?;
    let addrs = addresses_of(&service);
    if addrs.is_empty() {
        return Err(KubeDnsError::NoClusterIp);
    }
    Ok(addrs)
}

/// `spec.clusterIPs` (or the older `spec.clusterIP`), without `None`.
fn addresses_of(service: &Service) -> Vec<IpAddr> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let ips = if listed.is_empty() {
        spec.cluster_ip.iter().cloned().collect()
    } else {
        listed
    };
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// Reads the addresses, retrying with back-off until it succeeds or
/// `cancel` fires. Until then the kernel knows no cluster DNS address:
/// nothing is served transparently and nothing fails open.
pub async fn wait_for_cluster_dns(
    client: Client,
    cancel: CancellationToken,
) -> Option<Vec<IpAddr>> {
    let mut wait = RETRY_FIRST;
    let mut warned = false;
    loop {
        match cluster_dns_addresses(client.clone()).await {
            Ok(addrs) => return Some(addrs),
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(%error, "no cluster DNS address yet: no transparent mode, no fail-open; retrying");
            }
            Err(error) => tracing::debug!(%error, "cluster DNS Service still unreadable"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn service(ip: Option<&str>, ips: &[&str]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: ip.map(str::to_string),
                cluster_ips: (!ips.is_empty()).then(|| ips.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cluster_ips_of_every_family() {
        let dual = service(Some("10.96.0.10"), &["10.96.0.10", "fd00:96::a"]);
        assert_eq!(
            addresses_of(&dual),
            [
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fd00:96::a".parse().unwrap()
            ]
        );
        let old = service(Some("10.96.0.10"), &[]);
        assert_eq!(addresses_of(&old).len(), 1);
        assert!(addresses_of(&service(Some("None"), &["None"])).is_empty());
        assert!(addresses_of(&Service::default()).is_empty());
    }
}
