//! `deploy/monitoring/`: the PromQL its alerts and dashboard hold, and the
//! metric names they use, so the deploy tier can check the files and the
//! e2e tier can check every name against a real scrape.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::repo::{deploy_dir, deploy_documents};

pub fn monitoring_dir() -> PathBuf {
    deploy_dir().join("monitoring")
}

/// Every YAML document of `deploy/monitoring/<file>`.
pub fn documents(file: &str) -> Vec<Value> {
    deploy_documents(&format!("monitoring/{file}"))
}

/// The PrometheusRule's rule groups, as a Prometheus rules file (JSON is
/// YAML, which promtool reads).
pub fn rules_file() -> Value {
    let rule = documents("prometheusrule.yaml").remove(0);
    serde_json::json!({ "groups": rule["spec"]["groups"] })
}

/// The dashboard, parsed.
pub fn dashboard() -> Value {
    let text = std::fs::read_to_string(monitoring_dir().join("nodedns-dashboard.json"))
        .expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every `expr` of the dashboard's panels.
pub fn dashboard_exprs() -> Vec<String> {
    exprs(&dashboard()["panels"], "targets")
}

/// Every alert's `expr`.
pub fn rule_exprs() -> Vec<String> {
    exprs(&rules_file()["groups"], "rules")
}

/// The `expr` of every item under `inner` of every element of `outer`.
fn exprs(outer: &Value, inner: &str) -> Vec<String> {
    outer
        .as_array()
        .expect("an array of panels or groups")
        .iter()
        .flat_map(|o| o[inner].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// The agent's metric names in `expr`: identifiers starting with one of
/// its prefixes.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            ["nodedns_", "coredns_", "process_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_promql() {
        let names = metric_names(
            "sum by (le) (rate(nodedns_query_duration_seconds_bucket{instance=~\"$i\"}[5m])) / process_open_fds",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["nodedns_query_duration_seconds_bucket", "process_open_fds"]
        );
    }
}
