//! What the kernel shows about XDP programs in a lab namespace, for
//! assertions on attachments (which program, which mode, none left).

use serde_json::Value;

use super::error::{LabError, Result};
use super::netns::Netns;

/// One XDP program on one interface, as `bpftool net` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpAttachment {
    pub ifname: String,
    /// `generic` or `driver`.
    pub mode: String,
    pub prog_id: u64,
}

impl Netns {
    /// Every XDP attachment in the namespace (`bpftool -j net show`).
    pub fn xdp_attachments(&self) -> Result<Vec<XdpAttachment>> {
        let mut cmd = self.command_net_only("bpftool");
        cmd.args(["-j", "net", "show"]);
        let json = parse_json("bpftool net", &super::command::checked(&mut cmd)?.stdout)?;
        let mut found = Vec::new();
        for block in json.as_array().into_iter().flatten() {
            for xdp in block["xdp"].as_array().into_iter().flatten() {
                found.push(XdpAttachment {
                    ifname: xdp["devname"].as_str().unwrap_or("?").to_string(),
                    mode: xdp["mode"].as_str().unwrap_or("?").to_string(),
                    prog_id: xdp["id"].as_u64().unwrap_or(0),
                });
            }
        }
        Ok(found)
    }

    /// Ids of the XDP programs on `ifname` (`ip -d -j link`), sorted; empty
    /// when none is attached.
    pub fn xdp_prog_ids(&self, ifname: &str) -> Result<Vec<u64>> {
        let out = self.ip(&["-d", "-j", "link", "show", "dev", ifname])?;
        let json = parse_json("ip -j link", &out.stdout)?;
        let mut ids = Vec::new();
        if let Some(xdp) = json[0].get("xdp") {
            collect_prog_ids(xdp, &mut ids);
        }
        // iproute2 lists a single program both flat and under "attached".
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Whether any XDP program is attached to `ifname`.
    pub fn has_xdp(&self, ifname: &str) -> Result<bool> {
        Ok(!self.xdp_prog_ids(ifname)?.is_empty())
    }

    /// The XDP mode word `ip link` prints for `ifname`: `xdpgeneric`,
    /// `xdp` (native), `xdpdrv`, `xdpoffload`, `xdpmulti`; empty for none.
    pub fn xdp_mode(&self, ifname: &str) -> Result<String> {
        let out = self.ip(&["link", "show", "dev", ifname])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(["xdpgeneric", "xdpdrv", "xdpoffload", "xdpmulti", "xdp"]
            .iter()
            .find(|w| text.contains(&format!(" {w}")))
            .map_or_else(String::new, |w| w.to_string()))
    }
}

fn parse_json(what: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| LabError::Other(format!("{what} printed no JSON: {e}")))
}

fn collect_prog_ids(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Object(map) => {
            if let Some(id) = map.get("prog").and_then(|p| p["id"].as_u64()) {
                out.push(id);
            }
            for (k, child) in map {
                if k != "prog" {
                    collect_prog_ids(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_prog_ids(i, out)),
        _ => {}
    }
}

impl Netns {
    /// Names of the TCX egress programs on `ifname` (the fail-open egress
    /// program is `nodedns_egress`); empty when none is attached. Asked
    /// through aya, since the lab's bpftool predates TCX.
    pub fn tcx_egress_programs(&self, ifname: &str) -> Result<Vec<String>> {
        use aya::programs::{SchedClassifier, TcAttachType};
        let name = ifname.to_string();
        let listed = self.enter(move || SchedClassifier::query_tcx(&name, TcAttachType::Egress))?;
        let (_, programs) = listed
            .map_err(|e| LabError::Other(format!("query the TCX egress of {ifname}: {e}")))?;
        Ok(programs
            .iter()
            .map(|p| p.name_as_str().unwrap_or("?").to_string())
            .collect())
    }
}
