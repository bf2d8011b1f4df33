//! The `/metrics` page: every registry encoded in the format the scraper
//! asked for. Prometheus text format 0.0.4 by default, OpenMetrics 1.0.0
//! when `Accept` prefers it (Prometheus itself asks for OpenMetrics first).
//!
//! prometheus-client encodes OpenMetrics only, so the text format is derived
//! from it: the two differ, for what this agent exposes, in the names on the
//! `HELP` and `TYPE` lines of counters (`x` there, `x_total` in 0.0.4, which
//! is why promtool flagged every counter), in `info` (a `gauge` in 0.0.4),
//! and in the `# UNIT` and `# EOF` lines 0.0.4 does not have. The samples
//! are the same.

use std::fmt::Write;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::registry::Registry;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when its media
    /// type has a higher q-value than the text format (or a wildcard), the
    /// text format otherwise, including when there is no header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Self::Text;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => TEXT_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Everything `/metrics` serves: registries with distinct prefixes
/// (`nodedns_`, `coredns_`, `process_`), encoded one after another, and
/// what must run before each scrape.
#[derive(Default)]
pub struct Exposition {
    registries: Vec<Registry>,
    before_scrape: Vec<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("registries", &self.registries)
            .field("before_scrape", &self.before_scrape.len())
            .finish()
    }
}

impl Exposition {
    pub fn new(registries: Vec<Registry>) -> Self {
        Self {
            registries,
            before_scrape: Vec::new(),
        }
    }

    pub fn push(&mut self, registry: Registry) {
        self.registries.push(registry);
    }

    /// Runs `f` before each scrape (to bring counters kept elsewhere in).
    pub fn before_scrape(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.before_scrape.push(Box::new(f));
    }

    /// The page in `format`.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        for f in &self.before_scrape {
            f();
        }
        let mut openmetrics = String::new();
        for registry in &self.registries {
            encode_registry(&mut openmetrics, registry)?;
        }
        match format {
            Format::OpenMetrics => {
                encode_eof(&mut openmetrics)?;
                Ok(openmetrics)
            }
            Format::Text => openmetrics_to_text(&openmetrics),
        }
    }
}

/// Prometheus text 0.0.4 from prometheus-client's OpenMetrics output (see
/// the module comment for what differs). Metadata lines come as `HELP` then
/// `TYPE` for each family, so a `HELP` line waits for its family's type.
pub fn openmetrics_to_text(openmetrics: &str) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(openmetrics.len() + openmetrics.len() / 16);
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = text_family(name, kind);
            if let Some((_, text)) = help.take() {
                writeln!(out, "# HELP {name} {text}")?;
            }
            writeln!(out, "# TYPE {name} {kind}")?;
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// A family's name and type in the text format, from OpenMetrics'.
fn text_family(name: &str, kind: &str) -> (String, &'static str) {
    match kind {
        "counter" => (format!("{name}_total"), "counter"),
        "info" => (format!("{name}_info"), "gauge"),
        "gauge" => (name.to_string(), "gauge"),
        "histogram" => (name.to_string(), "histogram"),
        "summary" => (name.to_string(), "summary"),
        _ => (name.to_string(), "untyped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn prometheus_asks_for_openmetrics_first() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=0.0.1")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn text_is_the_default() {
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4"),
            Some("application/json"),
            Some("text/plain;q=1, application/openmetrics-text;q=0.9"),
            Some("application/openmetrics-text;q=0"),
            Some("application/openmetrics-text;q=0.5, */*"),
        ] {
            assert_eq!(Format::negotiate(accept), Format::Text, "{accept:?}");
        }
    }

    fn exposition() -> Exposition {
        let mut r = Registry::with_prefix("nodedns");
        let c: Family<[(&'static str, &'static str); 1], Counter> = Family::default();
        c.get_or_create(&[("path", "cluster")]).inc_by(3);
        r.register("queries", "Queries answered", c);
        let g: Gauge = Gauge::default();
        g.set(7);
        r.register("cache_entries", "Answers in the cache", g);
        let h = Histogram::new([0.001, 0.01]);
        h.observe(0.005);
        r.register("query_duration_seconds", "Time to answer", h);
        Exposition::new(vec![r])
    }

    #[test]
    fn text_names_counters_with_total_and_has_no_eof() {
        let text = exposition().encode(Format::Text).unwrap();
        assert!(text.contains("# HELP nodedns_queries_total Queries answered.\n"));
        assert!(text.contains("# TYPE nodedns_queries_total counter\n"));
        assert!(text.contains("nodedns_queries_total{path=\"cluster\"} 3\n"));
        assert!(text.contains("# TYPE nodedns_cache_entries gauge\nnodedns_cache_entries 7\n"));
        assert!(text.contains("# TYPE nodedns_query_duration_seconds histogram\n"));
        assert!(text.contains("nodedns_query_duration_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_keeps_family_names_and_ends_with_eof() {
        let om = exposition().encode(Format::OpenMetrics).unwrap();
        assert!(om.contains("# TYPE nodedns_queries counter\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn info_becomes_a_gauge_and_units_go() {
        let om = "# HELP x_build Build.\n# TYPE x_build info\nx_build_info{v=\"1\"} 1\n\
                  # HELP x_size Size.\n# TYPE x_size_bytes gauge\n# UNIT x_size_bytes bytes\nx_size_bytes 3\n# EOF\n";
        let text = openmetrics_to_text(om).unwrap();
        assert_eq!(
            text,
            "# HELP x_build_info Build.\n# TYPE x_build_info gauge\nx_build_info{v=\"1\"} 1\n\
             # HELP x_size_bytes Size.\n# TYPE x_size_bytes gauge\nx_size_bytes 3\n"
        );
    }
}
