//! The standard `process_*` families (the names Prometheus client libraries
//! use, so existing dashboards find them), read from `/proc/self` at each
//! scrape. A file that cannot be read leaves its families out of that
//! scrape rather than report a wrong value.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::kernel::process::clock_ticks_per_second;

/// A registry without prefix holding the process collector.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self/stat` says, in the units the metrics use.
#[derive(Debug, PartialEq)]
struct Stat {
    cpu_seconds: f64,
    start_ticks: u64,
    virtual_bytes: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // Field 3 (state) is index 0.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = clock_ticks_per_second() as f64;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// `VmRSS` of `/proc/self/status`, in bytes (the file says kB).
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit of `/proc/self/limits` row `name`; "unlimited" is
/// reported as u64::MAX, as Prometheus' Go client does.
fn parse_limit(limits: &str, name: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX as f64)
    } else {
        soft.parse::<u64>().ok().map(|v| v as f64)
    }
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        if let Some(stat) = read("/proc/self/stat").as_deref().and_then(parse_stat) {
            ConstCounter::new(stat.cpu_seconds).encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?)?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes as f64,
            )?;
            if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_boot_time) {
                let start = boot as f64 + stat.start_ticks as f64 / clock_ticks_per_second() as f64;
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    start,
                )?;
            }
        }
        if let Some(rss) = read("/proc/self/status").as_deref().and_then(parse_rss) {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss as f64,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                fds.count() as f64,
            )?;
        }
        if let Some(limits) = read("/proc/self/limits") {
            if let Some(max) = parse_limit(&limits, "Max open files") {
                gauge(
                    &mut encoder,
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                    max,
                )?;
            }
            if let Some(max) = parse_limit(&limits, "Max address space") {
                gauge(
                    &mut encoder,
                    "process_virtual_memory_max_bytes",
                    "Maximum amount of virtual memory available in bytes",
                    max,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let ticks = clock_ticks_per_second() as f64;
        let stat = "4242 (dns (agent)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                cpu_seconds: 300.0 / ticks,
                start_ticks: 123456,
                virtual_bytes: 987654321,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn limits_and_status() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         unlimited            unlimited            bytes     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            parse_limit(limits, "Max address space"),
            Some(u64::MAX as f64)
        );
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1700000000)
        );
    }

    #[test]
    fn the_running_process_reports_every_family() {
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &registry()).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
            "process_virtual_memory_max_bytes ",
        ] {
            assert!(page.contains(name), "{name} missing from\n{page}");
        }
    }
}
