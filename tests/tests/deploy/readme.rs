//! The README is the user's reference: every flag of every `dns-agent`
//! subcommand must appear in it.

use std::collections::BTreeSet;
use std::process::Command;

use nodedns_tests::lab::agent_binary;
use nodedns_tests::repo;

fn flags_of(subcommand: &str) -> BTreeSet<String> {
    let out = Command::new(agent_binary().unwrap())
        .args([subcommand, "--help"])
        .output()
        .expect("run dns-agent --help");
    assert!(out.status.success(), "dns-agent {subcommand} --help failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let flag = line.strip_prefix("--")?;
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty() && name != "help").then(|| format!("--{name}"))
        })
        .collect()
}

#[test]
fn readme_documents_every_flag() {
    let readme = std::fs::read_to_string(repo::root().join("README.md")).unwrap();
    let mut missing = Vec::new();
    for sub in ["run", "inspect", "cleanup"] {
        for flag in flags_of(sub) {
            if !readme.contains(&format!("`{flag}")) {
                missing.push(format!("{sub} {flag}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md does not document: {missing:?}"
    );
}
