//! The manifests in deploy/ validate against the Kubernetes schemas offline
//! (`kubernetes-validate --strict`, installed by `cargo xtask setup`) and keep
//! the security settings the README promises.

use std::path::PathBuf;
use std::process::Command;

use nodedns_tests::repo::{deploy_dir, deploy_documents as documents, kustomize_resources};
use serde_json::Value;

const MANIFESTS: &[&str] = &[
    "namespace.yaml",
    "rbac.yaml",
    "configmap.yaml",
    "daemonset.yaml",
    "service.yaml",
];

fn daemonset() -> Value {
    documents("daemonset.yaml").remove(0)
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let files: Vec<PathBuf> = MANIFESTS.iter().map(|f| deploy_dir().join(f)).collect();
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate not found: run `cargo xtask setup` (pip package kubernetes-validate)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(
        !text.contains("ERROR"),
        "kubernetes-validate reported errors:\n{text}"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = documents("kustomization.yaml").remove(0);
    let resources = kustomize_resources(&k);
    for m in MANIFESTS {
        assert!(resources.contains(m), "kustomization.yaml misses {m}");
    }
}

#[test]
fn daemonset_runs_on_every_node_with_host_network() {
    let ds = daemonset();
    let pod = get(&ds, "spec.template.spec");
    assert_eq!(pod["hostNetwork"], Value::Bool(true));
    assert_eq!(
        pod["dnsPolicy"].as_str(),
        Some("Default"),
        "the agent must not resolve through itself"
    );
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-node-critical")
    );
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t.get("key").is_none()),
        "needs a blanket toleration to run on every node"
    );
    assert_eq!(
        get(&ds, "spec.updateStrategy.type").as_str(),
        Some("RollingUpdate")
    );
    // Zero-loss hand-over: the new agent must start before the old one stops.
    assert_eq!(
        get(&ds, "spec.updateStrategy.rollingUpdate.maxSurge").as_u64(),
        Some(1)
    );
    assert_eq!(
        get(&ds, "spec.updateStrategy.rollingUpdate.maxUnavailable").as_u64(),
        Some(0)
    );
    assert!(
        get(&ds, "spec.template.spec.containers.0.ports").is_null(),
        "declared ports become hostPorts under hostNetwork and block the surge pod"
    );
}

#[test]
fn daemonset_grants_least_capabilities() {
    let ds = daemonset();
    let c = get(&ds, "spec.template.spec.containers.0");
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    let drop: Vec<&str> = sc["capabilities"]["drop"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(drop, ["ALL"]);
    let allowed = ["BPF", "PERFMON", "NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"];
    for cap in sc["capabilities"]["add"].as_array().unwrap() {
        let cap = cap.as_str().unwrap();
        assert!(
            allowed.contains(&cap),
            "capability {cap} is not justified in the README"
        );
    }
    let bpffs = get(&ds, "spec.template.spec.volumes")
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"].as_str() == Some("/sys/fs/bpf"));
    assert!(
        bpffs.is_some(),
        "the /sys/fs/bpf hostPath keeps pins across restarts"
    );
    assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
}

#[test]
fn probes_use_the_health_port_not_8080() {
    let ds = daemonset();
    let c = get(&ds, "spec.template.spec.containers.0");
    for probe in ["livenessProbe", "readinessProbe"] {
        let port = c[probe]["httpGet"]["port"].as_u64().unwrap();
        assert_ne!(port, 8080, "{probe} on 8080 clashes with node services");
        assert_eq!(port, 9254, "{probe} must use --health-addr's port");
    }
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
}

#[test]
fn cluster_role_is_read_only() {
    for doc in documents("rbac.yaml") {
        let kind = doc["kind"].as_str().unwrap();
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        for rule in doc["rules"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                let verb = verb.as_str().unwrap();
                if verb == "get" {
                    // Only the cluster DNS Service, by name (--cluster-dns-ip).
                    assert_eq!(rule["resources"], serde_json::json!(["services"]));
                    assert_eq!(rule["resourceNames"], serde_json::json!(["kube-dns"]));
                    continue;
                }
                assert!(verb == "list" || verb == "watch", "{kind} grants {verb}");
            }
        }
    }
}
