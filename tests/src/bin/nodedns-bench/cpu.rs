//! Server-side CPU: the server's threads (per-task schedstat) plus the XDP
//! program's own run time (`kernel.bpf_stats_enabled`), which runs in the
//! softirq of the sending CPU and so is not charged to the server.

use anyhow::{Context, Result, bail};
use nodedns_tests::lab::Netns;
use serde_json::Value;

/// Nanoseconds on CPU of every live thread of `pid` (first field of
/// `/proc/<pid>/task/<tid>/schedstat`). Threads that exit in between are
/// missed; the servers here keep their threads.
pub fn threads_ns(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        let path = task.context("list tasks")?.path().join("schedstat");
        // A thread can exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .with_context(|| format!("parse {}", path.display()))?;
    }
    Ok(total)
}

/// Resident set size of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {field} in {path}"))
}

/// Sets `kernel.bpf_stats_enabled` for the bench and restores the previous
/// value on drop (the stats cost a little on every program run).
pub struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS)
            .with_context(|| format!("read {BPF_STATS}"))?
            .trim()
            .to_string();
        std::fs::write(BPF_STATS, "1").with_context(|| format!("write 1 to {BPF_STATS}"))?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS, &self.previous) {
            eprintln!(
                "bench: could not restore {BPF_STATS} to {}: {e}",
                self.previous
            );
        }
    }
}

/// Id of the XDP program attached to `ifname` in `netns`.
pub fn xdp_prog_id(netns: &Netns, ifname: &str) -> Result<u32> {
    let ids: Vec<u64> = netns
        .xdp_attachments()?
        .into_iter()
        .filter(|a| a.ifname == ifname)
        .map(|a| a.prog_id)
        .collect();
    match ids.as_slice() {
        [id] => Ok(*id as u32),
        _ => bail!("expected one XDP program on {ifname}, bpftool shows {ids:?}"),
    }
}

/// `bpftool prog show id <id> --json`.
pub fn prog_info(id: u32) -> Result<Value> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .context("run bpftool prog show")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show id {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parse bpftool prog show")
}

/// (run_time_ns, run_cnt) of a program; zero while bpf_stats was off.
pub fn prog_stats(id: u32) -> Result<(u64, u64)> {
    let info = prog_info(id)?;
    let field = |k: &str| info.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok((field("run_time_ns"), field("run_cnt")))
}

/// Kernel memory of the program's maps (`bytes_memlock`, as bpftool shows
/// it), by map name.
pub fn map_memory(prog_id: u32) -> Result<Vec<(String, u64)>> {
    let info = prog_info(prog_id)?;
    let ids: Vec<u64> = info
        .get("map_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    let mut out = Vec::new();
    for id in ids {
        let o = std::process::Command::new("bpftool")
            .args(["-j", "map", "show", "id", &id.to_string()])
            .output()
            .context("run bpftool map show")?;
        let map: Value = serde_json::from_slice(&o.stdout).context("parse bpftool map show")?;
        let name = map.get("name").and_then(Value::as_str).unwrap_or("?");
        let bytes = map
            .get("bytes_memlock")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        out.push((name.to_string(), bytes));
    }
    Ok(out)
}
