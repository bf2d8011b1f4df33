//! Files of the repository the tests read: the manifests in `deploy/`, the
//! demo cluster in `deploy/examples`, the README.

use std::path::{Path, PathBuf};

/// The repository's root (the tests crate sits one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the tests crate sits inside the repository")
}

/// `deploy/`: the DaemonSet's manifests and the custom-records example.
pub fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

/// `deploy/examples`: the demo cluster (Services and EndpointSlices) the
/// demo, the e2e tests and the cluster tests serve.
pub fn examples_dir() -> PathBuf {
    deploy_dir().join("examples")
}

/// `web`, the demo cluster's Service with a ClusterIP in each family.
pub const WEB: &str = "web.default.svc.cluster.local";
pub const WEB_V4: &str = "10.96.0.20";
pub const WEB_V6: &str = "fd00:10:96::20";

/// The demo cluster's manifests copied into `dir` (created), so a test can
/// edit them; returns `dir`.
pub fn copy_examples(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the manifests dir");
    for entry in std::fs::read_dir(examples_dir()).expect("read deploy/examples") {
        let path = entry.expect("list deploy/examples").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, dir.join(name)).expect("copy a demo manifest");
        }
    }
    dir.to_path_buf()
}

/// Writes `text` to `path` atomically (write + rename), so a watcher of the
/// folder never reads half a file unless a test wants it to.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// The files a kustomization (one of [`deploy_documents`]) lists under
/// `resources`.
pub fn kustomize_resources(kustomization: &serde_json::Value) -> Vec<&str> {
    kustomization["resources"]
        .as_array()
        .expect("a resources list")
        .iter()
        .map(|r| r.as_str().expect("a resource path"))
        .collect()
}

/// Every YAML document of `deploy/<file>`, as JSON values (empty documents
/// left out).
pub fn deploy_documents(file: &str) -> Vec<serde_json::Value> {
    let path = deploy_dir().join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}
