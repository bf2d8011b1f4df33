//! One manifest file: Kubernetes YAML with Services, EndpointSlices and
//! `List`s of them, several documents per file. Other kinds are ignored, so
//! a folder of real manifests works.

use std::path::Path;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cluster::model::{ServiceInfo, SliceInfo};

/// Largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a manifest file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}:{line}: {reason}")]
pub struct ManifestError {
    pub path: String,
    /// 1-based line; the first line of the document for semantic errors.
    pub line: usize,
    pub reason: String,
}

/// The objects of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileObjects {
    pub services: Vec<ServiceInfo>,
    pub slices: Vec<SliceInfo>,
}

/// Parser limits for one document. serde-saphyr's default budget (250k
/// nodes) refuses a `List` of some 15k Services; [`MAX_FILE_BYTES`]
/// already bounds the work, so the node and event limits follow it.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_FILE_BYTES as usize,
            max_events: MAX_FILE_BYTES as usize,
        },
    }
}

/// Splits a YAML stream into documents, with the line each starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (idx, line) in text.lines().enumerate() {
        let separator = line.strip_prefix("---").map(str::trim_start);
        if separator.is_some_and(|rest| rest.is_empty() || rest.starts_with('#')) {
            docs.push((start, std::mem::take(&mut current)));
            start = idx + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

/// Parses one file's text (the path is only used in errors).
pub fn parse_file(path: &Path, text: &str) -> Result<FileObjects, ManifestError> {
    let mut out = FileObjects::default();
    for (start, doc) in documents(text) {
        let err = |line: usize, reason: String| ManifestError {
            path: path.display().to_string(),
            line,
            reason,
        };
        // Kubernetes objects are JSON at heart: YAML goes into a JSON value,
        // which k8s-openapi's types then read.
        let value: serde_json::Value = serde_saphyr::from_str_with_options(&doc, yaml_options())
            .map_err(|e| {
                let line = e
                    .location()
                    .map_or(start, |l| start + (l.line() as usize).saturating_sub(1));
                err(line, crate::cluster::yaml_error(&e, start - 1))
            })?;
        if value.is_null() {
            continue;
        }
        collect(value, &mut out).map_err(|reason| err(start, reason))?;
    }
    Ok(out)
}

fn collect(value: serde_json::Value, out: &mut FileObjects) -> Result<(), String> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "Service" => {
            let svc: Service =
                serde_json::from_value(value).map_err(|e| format!("Service: {e}"))?;
            out.services
                .push(ServiceInfo::from_service(&svc).map_err(|e| e.to_string())?);
        }
        "EndpointSlice" => {
            let slice: EndpointSlice =
                serde_json::from_value(value).map_err(|e| format!("EndpointSlice: {e}"))?;
            out.slices
                .push(SliceInfo::from_slice(&slice).map_err(|e| e.to_string())?);
        }
        k if k.ends_with("List") => {
            let items = value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for item in items {
                collect(item, out)?;
            }
        }
        // Not a Kubernetes object at all (e.g. the custom records file kept
        // next to the manifests): skip it rather than fail the file.
        "" if value.get("apiVersion").is_none() => {
            tracing::warn!("manifests: ignoring a document with neither apiVersion nor kind")
        }
        "" => return Err("document has no `kind`".into()),
        other => tracing::debug!(kind = other, "manifests: ignoring kind"),
    }
    Ok(())
}

/// Whether `path` names a manifest: `.yaml`, `.yml` or `.json`, and not
/// hidden (editors' and atomic writers' temporary files are, and so is a
/// ConfigMap volume's `..data`).
pub fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(ext, Some("yaml" | "yml" | "json"))
}

/// Why a manifest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the file is gone")]
    Missing,
    #[error("{0} bytes is over the {MAX_FILE_BYTES} byte limit")]
    TooBig(u64),
    #[error("{0}")]
    Io(std::io::Error),
}

/// The file's text, if it is there and not over [`MAX_FILE_BYTES`].
pub fn read_limited(path: &Path) -> Result<String, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing,
        _ => ReadError::Io(e),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooBig(meta.len()));
    }
    std::fs::read_to_string(path).map_err(io)
}
