//! `dns-agent inspect --json`: the kernel's entries and counters, read from
//! the pinned maps (bpffs is shared by every namespace, so this runs here).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::lab::agent_binary;

/// One snapshot of the kernel map and counters.
#[derive(Clone, Debug)]
pub struct Inspect(Value);

impl Inspect {
    /// Runs `dns-agent inspect --json --bpffs-path <bpffs>`; panics, with
    /// its stderr, if it fails.
    pub fn read(bpffs: &Path) -> Self {
        let out = std::process::Command::new(agent_binary().expect("the dns-agent binary"))
            .args(["inspect", "--json", "--bpffs-path"])
            .arg(bpffs)
            .output()
            .expect("run dns-agent inspect");
        assert!(
            out.status.success(),
            "dns-agent inspect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON"))
    }

    /// The kernel entry for `name` (with or without the final dot, any
    /// case) and `qtype`, if any.
    pub fn entry(&self, name: &str, qtype: &str) -> Option<&Value> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        self.entries().into_iter().find(|e| {
            e["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&fqdn))
                && e["qtype"] == qtype
        })
    }

    /// Every entry of the kernel map.
    pub fn entries(&self) -> Vec<&Value> {
        self.0["entries"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// The kernel counters (all CPUs summed), whether `counters` is printed
    /// as an object or as `[name, value]` pairs.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let counters = &self.0["counters"];
        if let Some(object) = counters.as_object() {
            return object
                .iter()
                .map(|(name, n)| (name.clone(), n.as_u64().unwrap_or(0)))
                .collect();
        }
        counters
            .as_array()
            .into_iter()
            .flatten()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or("?").to_string(),
                    pair[1].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The hottest list, hottest first: each entry's name (None once it
    /// left the map), type and estimated hits.
    pub fn hot(&self) -> Vec<(Option<String>, Option<String>, u64)> {
        self.0["hot"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                (
                    h["name"].as_str().map(str::to_string),
                    h["qtype"].as_str().map(str::to_string),
                    h["hits"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// One kernel counter (0 when absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters().get(name).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Inspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}
