//! `deploy/monitoring/`: the alert rules pass `promtool check rules`, the
//! dashboard is JSON whose panels all query the agent's metrics in valid
//! PromQL, and none of it is in the default `kubectl apply -k deploy/` set.
//! (That every metric name they use is in a real scrape is an e2e test.)

use std::process::Command;

use nodedns_tests::lab::TempDir;
use nodedns_tests::monitoring::{
    dashboard, dashboard_exprs, documents, metric_names, rule_exprs, rules_file,
};
use nodedns_tests::repo::{deploy_dir, kustomize_resources};
use serde_json::Value;

/// `promtool check rules` on `rules` (a rules file as JSON); panics with
/// its output unless it succeeds.
fn promtool_check_rules(rules: &Value) {
    let dir = TempDir::create().unwrap();
    let path = dir.path().join("nodedns-rules.json");
    std::fs::write(&path, rules.to_string()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool not found: run `cargo xtask setup` (Debian package prometheus)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn alert_rules_pass_promtool() {
    promtool_check_rules(&rules_file());
}

/// Grafana's variables in the dashboard's queries, and what stands for
/// each when promtool parses them.
const GRAFANA_VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "5m"),
    ("$__range", "1h"),
    ("$instance", ".*"),
];

#[test]
fn dashboard_queries_are_promql() {
    // promtool parses recording rules' expressions as PromQL, so each
    // panel query, its variables replaced, becomes one.
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = GRAFANA_VARIABLES
                .iter()
                .fold(expr.clone(), |e, (var, value)| e.replace(var, value));
            assert!(!expr.contains('$'), "a Grafana variable left in {expr}");
            serde_json::json!({ "record": format!("dashboard:panel_{i}"), "expr": expr })
        })
        .collect();
    promtool_check_rules(&serde_json::json!({
        "groups": [{ "name": "nodedns-dashboard", "rules": rules }]
    }));
}

#[test]
fn every_alert_the_issue_names_is_there() {
    let alerts: Vec<String> = rules_file()["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    for alert in [
        "NodednsAgentDown",
        "NodednsFailOpenActive",
        "NodednsXdpDetached",
        "NodednsKernelMapEvicting",
        "NodednsUpstreamErrorsHigh",
        "NodednsClusterStateNotSynced",
    ] {
        assert!(
            alerts.iter().any(|a| a == alert),
            "{alert} missing: {alerts:?}"
        );
    }
    for r in rules_file()["groups"][0]["rules"].as_array().unwrap() {
        for key in ["summary", "description"] {
            assert!(
                r["annotations"][key].is_string(),
                "{} has no {key}",
                r["alert"]
            );
        }
    }
}

#[test]
fn dashboard_panels_query_the_agent() {
    let d = dashboard();
    assert_eq!(d["uid"], "nodedns");
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        assert!(!metric_names(expr).is_empty(), "no agent metric in {expr}");
    }
    let titles: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for view in [
        "Kernel hit share",
        "Kernel map occupancy",
        "Promotions",
        "Hand-overs",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(view)),
            "no {view} panel: {titles:?}"
        );
    }
    assert!(!rule_exprs().is_empty());
}

#[test]
fn monitoring_is_its_own_kustomization() {
    let k = documents("kustomization.yaml").remove(0);
    assert_eq!(
        kustomize_resources(&k),
        ["servicemonitor.yaml", "prometheusrule.yaml"]
    );
    assert_eq!(
        k["configMapGenerator"][0]["files"][0].as_str(),
        Some("nodedns-dashboard.json")
    );
    let default = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    assert!(
        !default.contains("monitoring"),
        "the default set needs no prometheus-operator CRDs"
    );
}

#[test]
fn service_monitor_selects_the_metrics_service() {
    let sm = documents("servicemonitor.yaml").remove(0);
    let text = std::fs::read_to_string(deploy_dir().join("service.yaml")).unwrap();
    let svc: Value = serde_saphyr::from_str(&text).unwrap();
    let wanted = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (k, v) in wanted {
        assert_eq!(&svc["metadata"]["labels"][k], v, "Service label {k}");
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert!(
        ports.iter().any(|p| p["name"] == port),
        "no Service port {port}"
    );
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"][0],
        svc["metadata"]["namespace"]
    );
}
