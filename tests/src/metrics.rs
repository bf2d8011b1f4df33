//! One `/metrics` scrape of the agent, parsed into samples.

use std::collections::BTreeMap;

/// Samples as `(name{labels}, value)`, and the page itself.
#[derive(Clone, Debug)]
pub struct Metrics {
    text: String,
    samples: Vec<(String, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.trim().parse().ok()?))
            })
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The page as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The samples of family `name` whose labels include all of `labels`
    /// (`(key, value)` pairs), with their label text.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.samples.iter().filter_map(move |(series, value)| {
            let (family, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = family == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then_some((rest, *value))
        })
    }

    /// The sum of every sample of `name` whose labels include all of
    /// `labels`: 0 when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels).map(|(_, v)| v as u64).sum()
    }

    /// The sums of family `name` by the value of its label `label`.
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, u64> {
        let key = format!("{label}=\"");
        let mut sums = BTreeMap::new();
        for (labels, value) in self.matching(name, &[]) {
            let Some((_, rest)) = labels.split_once(&key) else {
                continue;
            };
            let value_of_label = rest.split('"').next().unwrap_or_default();
            *sums.entry(value_of_label.to_string()).or_default() += value as u64;
        }
        sums
    }

    /// The value of one exact series (`name` or `name{labels}`).
    pub fn value(&self, series: &str) -> Option<f64> {
        self.samples
            .iter()
            .find_map(|(s, v)| (s == series).then_some(*v))
    }

    /// Queries answered in userspace, all paths together.
    pub fn userspace_queries(&self) -> u64 {
        self.sum("nodedns_queries_total", &[])
    }

    /// Packets the XDP program answered itself.
    pub fn xdp_hits(&self) -> u64 {
        self.sum("nodedns_xdp_packets_total", &[("outcome", "hit")])
    }

    /// What promotion did with the kernel map, for a report:
    /// `map: admitted {..}, rejected {..}, evicted {..}, N hit samples, N agings`.
    pub fn map_line(&self) -> String {
        format!(
            "map: admitted {:?}, rejected {:?}, evicted {:?}, {} hit samples, {} agings",
            self.sum_by("nodedns_map_admitted_total", "reason"),
            self.sum_by("nodedns_map_rejected_total", "reason"),
            self.sum_by("nodedns_map_evictions_total", "reason"),
            self.sum("nodedns_map_hit_samples_total", &[]),
            self.sum("nodedns_map_frequency_agings_total", &[]),
        )
    }

    /// The query and XDP samples that are not zero, for failure messages.
    pub fn queries_table(&self) -> String {
        self.samples
            .iter()
            .filter(|(s, v)| {
                (s.starts_with("nodedns_queries_total") || s.starts_with("nodedns_xdp_packets"))
                    && *v > 0.0
            })
            .map(|(s, v)| format!("{s} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_family_and_labels() {
        let m = Metrics::parse(
            "# HELP nodedns_queries_total Queries.\n\
             nodedns_queries_total{path=\"cluster\",rcode=\"NOERROR\"} 3\n\
             nodedns_queries_total{path=\"cache_hit\",rcode=\"NXDOMAIN\"} 2\n\
             nodedns_queries_total_other 7\n\
             nodedns_map_capacity 64\n",
        );
        assert_eq!(m.userspace_queries(), 5);
        assert_eq!(m.sum("nodedns_queries_total", &[("rcode", "NXDOMAIN")]), 2);
        assert_eq!(m.sum("nodedns_missing", &[]), 0);
        assert_eq!(m.value("nodedns_map_capacity"), Some(64.0));
        let by_path = m.sum_by("nodedns_queries_total", "path");
        assert_eq!(by_path["cluster"], 3);
        assert_eq!(by_path["cache_hit"], 2);
    }
}
