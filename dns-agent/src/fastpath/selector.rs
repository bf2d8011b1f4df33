//! Which interfaces the program goes on: `--interface` globs minus
//! `--exclude-interface` globs.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::error::FastPathError;

#[derive(Debug, Clone)]
pub struct InterfaceSelector {
    include: GlobSet,
    exclude: GlobSet,
    /// `--interface` values without glob characters: they name one
    /// interface that must exist when the agent starts.
    literals: Vec<String>,
}

impl InterfaceSelector {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, FastPathError> {
        let literals = include.iter().filter(|p| !is_glob(p)).cloned().collect();
        Ok(Self {
            include: build(include)?,
            exclude: build(exclude)?,
            literals,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.include.is_match(name) && !self.exclude.is_match(name)
    }

    pub fn literals(&self) -> &[String] {
        &self.literals
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

fn build(patterns: &[String]) -> Result<GlobSet, FastPathError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        if pattern.is_empty() || pattern.len() > libc::IFNAMSIZ * 4 {
            return Err(FastPathError::Pattern {
                pattern: pattern.clone(),
                reason: "empty or far longer than an interface name".into(),
            });
        }
        let glob = Glob::new(pattern).map_err(|e| FastPathError::Pattern {
            pattern: pattern.clone(),
            reason: e.kind().to_string(),
        })?;
        set.add(glob);
    }
    set.build().map_err(|e| FastPathError::Pattern {
        pattern: patterns.join(","),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs_and_excludes() {
        let sel = InterfaceSelector::new(
            &strings(&["veth*", "cali*", "eth1"]),
            &strings(&["veth-keep*"]),
        )
        .unwrap();
        assert!(sel.matches("veth1234"));
        assert!(sel.matches("cali0a1b"));
        assert!(sel.matches("eth1"));
        assert!(!sel.matches("eth0"));
        assert!(!sel.matches("veth-keep0"));
        assert_eq!(sel.literals(), ["eth1"]);
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = InterfaceSelector::new(&strings(&["veth[*"]), &[]).unwrap_err();
        assert!(err.to_string().contains("veth[*"), "{err}");
    }
}
