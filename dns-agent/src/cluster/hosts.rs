//! Custom host records: exact names answered authoritatively, hosts-file
//! style (`IP name [name...]`). The first name of a line is the PTR target.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsTable {
    names: HashMap<LowerName, Vec<IpAddr>>,
    reverse: HashMap<IpAddr, Name>,
}

/// A hosts line that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostsError {
    #[error("line {line}: {value:?} is not an IP address (expected `IP name [name...]`)")]
    BadIp { line: usize, value: String },
    #[error("line {line}: {value:?} is not a valid DNS name")]
    BadName { line: usize, value: String },
    #[error("line {line}: an address needs at least one name")]
    NoName { line: usize },
}

impl HostsTable {
    /// Parses hosts-style text; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Self, HostsError> {
        let mut table = Self::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = raw.split('#').next().unwrap_or("");
            let mut fields = content.split_whitespace();
            let Some(ip) = fields.next() else { continue };
            let ip: IpAddr = ip.parse().map_err(|_| HostsError::BadIp {
                line,
                value: ip.to_string(),
            })?;
            let mut any = false;
            for value in fields {
                let mut name = Name::from_ascii(value).map_err(|_| HostsError::BadName {
                    line,
                    value: value.to_string(),
                })?;
                name.set_fqdn(true);
                let name = name.to_lowercase();
                table.reverse.entry(ip).or_insert_with(|| name.clone());
                let ips = table.names.entry(LowerName::new(&name)).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
                any = true;
            }
            if !any {
                return Err(HostsError::NoName { line });
            }
        }
        Ok(table)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn addresses(&self, name: &LowerName) -> Option<&[IpAddr]> {
        self.names.get(name).map(Vec::as_slice)
    }

    pub fn ptr(&self, ip: &IpAddr) -> Option<&Name> {
        self.reverse.get(ip)
    }

    /// Every address with a PTR record.
    pub fn ptr_addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.reverse.keys()
    }
}
