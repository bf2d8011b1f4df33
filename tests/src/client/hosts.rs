//! What `getent ahosts` (glibc's resolver) printed, parsed.

use std::process::Output;

/// `getent` output: one `address  STREAM name` line per address and socket
/// type.
#[derive(Clone, Debug)]
pub struct Hosts {
    /// Whether getent exited 0 (it found the name).
    pub success: bool,
    /// Each address once, in glibc's order.
    pub addresses: Vec<String>,
    /// stdout and stderr, for failure messages.
    pub raw: String,
}

impl Hosts {
    pub fn parse(out: &Output) -> Self {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut addresses: Vec<String> = Vec::new();
        for address in stdout.lines().filter_map(|l| l.split_whitespace().next()) {
            if !addresses.iter().any(|a| a == address) {
                addresses.push(address.to_string());
            }
        }
        Self {
            success: out.status.success(),
            addresses,
            raw: format!(
                "{stdout}{} ({})",
                String::from_utf8_lossy(&out.stderr),
                out.status
            ),
        }
    }

    /// The addresses, sorted, to compare with an expected set.
    pub fn sorted(&self) -> Vec<String> {
        let mut addresses = self.addresses.clone();
        addresses.sort();
        addresses
    }
}
