//! `deploy/daemonset.yaml` and `deploy/configmap.yaml` read the way kubelet
//! reads them, and turned into a `podman run` command line. The image tests
//! start the agent with it, so a manifest change that breaks the container
//! (a capability, a mount, a flag, the memory limit) fails them.
//!
//! The translation is strict: a field it does not know panics with the
//! field's name instead of being skipped, so a new setting in the manifest
//! is either translated here or consciously ignored (scheduling-only
//! fields, listed in [`IGNORED_POD_FIELDS`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::repo::deploy_documents as documents;

/// Pod fields that only matter to the API server or the scheduler.
pub const IGNORED_POD_FIELDS: &[&str] = &["priorityClassName", "tolerations"];
const POD_FIELDS: &[&str] = &[
    "serviceAccountName",
    "hostNetwork",
    "dnsPolicy",
    "terminationGracePeriodSeconds",
    "containers",
    "volumes",
];
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    // The tests run the image they are given.
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "envFrom",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
];
const SECURITY_FIELDS: &[&str] = &[
    "runAsUser",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "privileged",
    "capabilities",
    "seccompProfile",
];

/// The agent's pod as the DaemonSet's template describes it.
#[derive(Clone, Debug)]
pub struct AgentPod {
    pub namespace: String,
    pub annotations: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub host_network: bool,
    pub dns_policy: String,
    pub termination_grace_secs: u64,
    /// The image the manifest names (the tests run the one under test).
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `envFrom` ConfigMaps resolved from configmap.yaml, then `env` (which
    /// wins, as in Kubernetes).
    pub env: BTreeMap<String, String>,
    pub security: Security,
    pub mounts: Vec<HostMount>,
    pub resources: Resources,
    pub liveness: Option<HttpProbe>,
    pub readiness: Option<HttpProbe>,
}

#[derive(Clone, Debug)]
pub struct Security {
    pub run_as_user: Option<u64>,
    /// Kubernetes' default is true.
    pub allow_privilege_escalation: bool,
    pub read_only_root: bool,
    pub privileged: bool,
    pub drop: Vec<String>,
    pub add: Vec<String>,
    /// `seccompProfile.type`; none means kubelet's default, Unconfined
    /// (unless the node runs kubelet with `--seccomp-default`).
    pub seccomp: Option<String>,
}

#[derive(Clone, Debug)]
pub struct HostMount {
    pub host_path: PathBuf,
    pub mount_path: PathBuf,
    pub read_only: bool,
    /// `mountPropagation`: None, HostToContainer or Bidirectional.
    pub propagation: String,
    /// `hostPath.type: DirectoryOrCreate`.
    pub create: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub memory_limit: Option<u64>,
    pub memory_request: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub cpu_request_millis: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct HttpProbe {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// What kubelet provides on a node and a lab test must provide itself.
pub struct Node<'a> {
    /// The network namespace that plays the node's (hostNetwork).
    pub netns: &'a str,
    /// Where each hostPath of the manifest lives for this test: the tests
    /// must not touch the machine's real `/sys/fs/bpf/nodedns`.
    pub host_paths: &'a BTreeMap<PathBuf, PathBuf>,
    /// The node's resolv.conf (`dnsPolicy: Default`).
    pub resolv_conf: &'a Path,
    /// Stands in for the service account token kubelet mounts: a
    /// kubeconfig for the test's API server, passed as `KUBECONFIG`.
    pub kubeconfig: &'a Path,
}

/// Where the kubeconfig stand-in is mounted in the container.
const KUBECONFIG_IN_CONTAINER: &str = "/var/run/nodedns-test/kubeconfig";

impl AgentPod {
    /// Reads deploy/daemonset.yaml (its one container) and the ConfigMaps
    /// of deploy/configmap.yaml it refers to.
    pub fn load() -> Self {
        let ds = documents("daemonset.yaml")
            .into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .expect("daemonset.yaml holds a DaemonSet");
        let namespace = str_at(&ds["metadata"], "namespace").to_string();
        let template = &ds["spec"]["template"];
        let pod = &template["spec"];
        check_fields("pod spec", pod, POD_FIELDS, IGNORED_POD_FIELDS);
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(
            containers.len(),
            1,
            "the image tests translate a pod with one container"
        );
        let c = &containers[0];
        check_fields("container", c, CONTAINER_FIELDS, &[]);

        let volumes: BTreeMap<String, &Value> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (str_at(v, "name").to_string(), v))
            .collect();
        let mounts = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let name = str_at(m, "name");
                let volume = volumes
                    .get(name)
                    .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
                check_fields("volume", volume, &["name", "hostPath"], &[]);
                let host = &volume["hostPath"];
                HostMount {
                    host_path: PathBuf::from(str_at(host, "path")),
                    mount_path: PathBuf::from(str_at(m, "mountPath")),
                    read_only: m["readOnly"].as_bool().unwrap_or(false),
                    propagation: m["mountPropagation"].as_str().unwrap_or("None").to_string(),
                    create: host["type"].as_str() == Some("DirectoryOrCreate"),
                }
            })
            .collect();

        let mut env = BTreeMap::new();
        for source in c["envFrom"].as_array().into_iter().flatten() {
            check_fields("envFrom", source, &["configMapRef"], &[]);
            let name = str_at(&source["configMapRef"], "name");
            env.extend(config_map(&namespace, name));
        }
        for var in c["env"].as_array().into_iter().flatten() {
            check_fields("env", var, &["name", "value"], &[]);
            env.insert(
                str_at(var, "name").to_string(),
                str_at(var, "value").to_string(),
            );
        }

        let sc = &c["securityContext"];
        check_fields("securityContext", sc, SECURITY_FIELDS, &[]);
        let caps = |key: &str| -> Vec<String> {
            sc["capabilities"][key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().expect("a capability name").to_string())
                .collect()
        };
        let security = Security {
            run_as_user: sc["runAsUser"].as_u64(),
            allow_privilege_escalation: sc["allowPrivilegeEscalation"].as_bool().unwrap_or(true),
            read_only_root: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            privileged: sc["privileged"].as_bool().unwrap_or(false),
            drop: caps("drop"),
            add: caps("add"),
            seccomp: sc["seccompProfile"]["type"].as_str().map(str::to_string),
        };

        let quantity = |path: [&str; 2], parse: fn(&str) -> u64| {
            c["resources"][path[0]][path[1]]
                .as_str()
                .map(parse)
                .or_else(|| {
                    c["resources"][path[0]][path[1]]
                        .as_u64()
                        .map(|n| parse(&n.to_string()))
                })
        };
        let resources = Resources {
            memory_limit: quantity(["limits", "memory"], bytes),
            memory_request: quantity(["requests", "memory"], bytes),
            cpu_limit_millis: quantity(["limits", "cpu"], millicores),
            cpu_request_millis: quantity(["requests", "cpu"], millicores),
        };

        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        };
        Self {
            annotations: template["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            service_account: pod["serviceAccountName"].as_str().map(str::to_string),
            host_network: pod["hostNetwork"].as_bool().unwrap_or(false),
            dns_policy: pod["dnsPolicy"]
                .as_str()
                .unwrap_or("ClusterFirst")
                .to_string(),
            termination_grace_secs: pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
            image: str_at(c, "image").to_string(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            env,
            security,
            mounts,
            resources,
            liveness: http_probe(&c["livenessProbe"]),
            readiness: http_probe(&c["readinessProbe"]),
            namespace,
        }
    }

    /// The value of `--flag=value` or `--flag value` in the container's args.
    pub fn arg(&self, flag: &str) -> Option<&str> {
        let prefix = format!("{flag}=");
        self.args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&prefix).or_else(|| {
                (a == flag)
                    .then(|| self.args.get(i + 1).map(String::as_str))
                    .flatten()
            })
        })
    }

    /// Where `path` inside the container is on the node, through the
    /// container's hostPath mounts (the agent's `--bpffs-path`, say).
    pub fn on_node(&self, path: &Path, host_paths: &BTreeMap<PathBuf, PathBuf>) -> PathBuf {
        let mount = self
            .mounts
            .iter()
            .filter(|m| path.starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.as_os_str().len())
            .unwrap_or_else(|| panic!("{} is on no hostPath mount", path.display()));
        let host = host_paths
            .get(&mount.host_path)
            .unwrap_or_else(|| panic!("no place for hostPath {}", mount.host_path.display()));
        host.join(path.strip_prefix(&mount.mount_path).expect("a prefix"))
    }

    /// The port Prometheus scrapes (the `prometheus.io/port` annotation).
    pub fn metrics_port(&self) -> u16 {
        self.annotations
            .get("prometheus.io/port")
            .expect("the pod template has a prometheus.io/port annotation")
            .parse()
            .expect("prometheus.io/port is a port number")
    }

    /// `podman run` options that give a container the pod's environment,
    /// on `node`: everything before the image name. The image's own
    /// arguments are [`Self::args`] (or other ones, for `cleanup` and
    /// `inspect` runs with the same permissions).
    pub fn podman_options(&self, node: &Node<'_>) -> Vec<String> {
        let mut o: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| o.extend(items.iter().map(|s| s.to_string()));

        assert!(
            self.host_network,
            "the image tests run the agent in the node's network namespace (hostNetwork: true)"
        );
        push(&["--network", &format!("ns:/run/netns/{}", node.netns)]);
        // `podman run --network ns:` would write its own resolv.conf from
        // the machine's; the pod gets the node's.
        match self.dns_policy.as_str() {
            "Default" => push(&[
                "--volume",
                &format!("{}:/etc/resolv.conf:ro", node.resolv_conf.display()),
            ]),
            other => panic!("dnsPolicy {other} is not translated (the agent needs Default)"),
        }

        let sec = &self.security;
        if sec.privileged {
            push(&["--privileged"]);
        }
        if let Some(uid) = sec.run_as_user {
            push(&["--user", &uid.to_string()]);
        }
        for cap in &sec.drop {
            push(&["--cap-drop", cap]);
        }
        for cap in &sec.add {
            push(&["--cap-add", cap]);
        }
        if !sec.allow_privilege_escalation {
            push(&["--security-opt", "no-new-privileges"]);
        }
        if sec.read_only_root {
            // Kubernetes adds no tmpfs to a read-only root; podman would.
            push(&["--read-only", "--read-only-tmpfs=false"]);
        }
        match sec.seccomp.as_deref() {
            None | Some("Unconfined") => push(&["--security-opt", "seccomp=unconfined"]),
            Some("RuntimeDefault") => {}
            Some(other) => panic!("seccompProfile {other} is not translated"),
        }

        for m in &self.mounts {
            let host = node.host_paths.get(&m.host_path).unwrap_or_else(|| {
                panic!(
                    "the test gives no place for hostPath {}: add it to the node's host paths",
                    m.host_path.display()
                )
            });
            if m.create {
                std::fs::create_dir_all(host)
                    .unwrap_or_else(|e| panic!("create {}: {e}", host.display()));
            }
            let propagation = match m.propagation.as_str() {
                "None" => "rprivate",
                "HostToContainer" => "rslave",
                "Bidirectional" => "rshared",
                other => panic!("mountPropagation {other} is not translated"),
            };
            let mode = if m.read_only { "ro" } else { "rw" };
            push(&[
                "--volume",
                &format!(
                    "{}:{}:{mode},{propagation}",
                    host.display(),
                    m.mount_path.display()
                ),
            ]);
        }

        if self.service_account.is_some() {
            push(&[
                "--volume",
                &format!("{}:{KUBECONFIG_IN_CONTAINER}:ro", node.kubeconfig.display()),
                "--env",
                &format!("KUBECONFIG={KUBECONFIG_IN_CONTAINER}"),
            ]);
        }
        for (key, value) in &self.env {
            push(&["--env", &format!("{key}={value}")]);
        }

        let r = &self.resources;
        if let Some(limit) = r.memory_limit {
            // kubelet runs without swap: the limit is all the memory there is.
            push(&[
                "--memory",
                &limit.to_string(),
                "--memory-swap",
                &limit.to_string(),
            ]);
        }
        if let Some(request) = r.memory_request {
            push(&["--memory-reservation", &request.to_string()]);
        }
        if let Some(millis) = r.cpu_request_millis {
            // kubelet's conversion of a CPU request to cgroup shares.
            push(&["--cpu-shares", &(millis * 1024 / 1000).max(2).to_string()]);
        }
        if let Some(millis) = r.cpu_limit_millis {
            push(&["--cpus", &format!("{}", millis as f64 / 1000.0)]);
        }
        push(&["--stop-timeout", &self.termination_grace_secs.to_string()]);
        if let Some(entrypoint) = self.command.first() {
            assert_eq!(
                self.command.len(),
                1,
                "a multi-word `command` is not translated"
            );
            push(&["--entrypoint", entrypoint]);
        }
        o
    }
}

/// The data of ConfigMap `name` in `namespace`, from deploy/configmap.yaml.
fn config_map(namespace: &str, name: &str) -> BTreeMap<String, String> {
    let cm = documents("configmap.yaml")
        .into_iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"].as_str() == Some(name)
                && d["metadata"]["namespace"].as_str() == Some(namespace)
        })
        .unwrap_or_else(|| panic!("configmap.yaml has no ConfigMap {namespace}/{name}"));
    cm["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), value)
        })
        .collect()
}

/// The ConfigMap document `name` of deploy/configmap.yaml as JSON, for the
/// fake API server.
pub fn config_map_object(name: &str) -> Value {
    documents("configmap.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("configmap.yaml has no ConfigMap {name}"))
}

fn http_probe(probe: &Value) -> Option<HttpProbe> {
    if probe.is_null() {
        return None;
    }
    let get = &probe["httpGet"];
    assert!(get.is_object(), "only httpGet probes are translated");
    Some(HttpProbe {
        host: get["host"].as_str().unwrap_or("127.0.0.1").to_string(),
        port: get["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("a numeric probe port"),
        path: str_at(get, "path").to_string(),
    })
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is missing or not a string in {v:?}"))
}

/// Panics on a field neither translated nor listed as ignorable.
fn check_fields(what: &str, v: &Value, known: &[&str], ignored: &[&str]) {
    for key in v.as_object().into_iter().flatten().map(|(k, _)| k) {
        let key = key.as_str();
        assert!(
            known.contains(&key) || ignored.contains(&key),
            "{what} field `{key}` is not translated to podman by tests/src/daemonset.rs: \
             translate it there (or list it as ignored, if it only matters to the scheduler)"
        );
    }
}

/// A Kubernetes memory quantity in bytes ("256Mi", "1G", "1048576").
pub fn bytes(quantity: &str) -> u64 {
    let q = quantity.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {quantity:?}"));
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("memory quantity suffix {other:?} in {quantity:?}"),
    };
    (number * factor) as u64
}

/// A Kubernetes CPU quantity in millicores ("50m", "1", "0.5").
pub fn millicores(quantity: &str) -> u64 {
    let q = quantity.trim();
    match q.strip_suffix('m') {
        Some(m) => m
            .parse()
            .unwrap_or_else(|_| panic!("cpu quantity {quantity:?}")),
        None => {
            (q.parse::<f64>()
                .unwrap_or_else(|_| panic!("cpu quantity {quantity:?}"))
                * 1000.0) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(bytes("256Mi"), 256 << 20);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("500M"), 500_000_000);
        assert_eq!(bytes("1048576"), 1 << 20);
        assert_eq!(millicores("50m"), 50);
        assert_eq!(millicores("1"), 1000);
        assert_eq!(millicores("0.5"), 500);
    }

    #[test]
    fn the_daemonset_translates() {
        let pod = AgentPod::load();
        assert!(pod.arg("--bpffs-path").is_some());
        assert!(pod.resources.memory_limit.is_some());
        let host_paths = pod
            .mounts
            .iter()
            .map(|m| (m.host_path.clone(), std::env::temp_dir()))
            .collect();
        let node = Node {
            netns: "ndlab-x-node",
            host_paths: &host_paths,
            resolv_conf: Path::new("/etc/resolv.conf"),
            kubeconfig: Path::new("/dev/null"),
        };
        let options = pod.podman_options(&node);
        assert!(options.iter().any(|o| o == "--read-only"), "{options:?}");
        assert!(
            options.iter().any(|o| o == "no-new-privileges"),
            "{options:?}"
        );
    }
}
