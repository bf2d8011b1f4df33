//! A named network namespace (`ip netns add`), removed on drop.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::command::{self, ip};
use super::error::{LabError, Result};
use super::names::{check_ifname, unique_suffix};
use crate::client::{Hosts, Reply};

/// Bounds on one client run (`dig`, `kdig`): one try, two seconds. A later
/// argument overrides them (`+time=1`).
const DIG_BOUNDS: [&str; 2] = ["+time=2", "+tries=1"];
const KDIG_BOUNDS: [&str; 2] = ["+timeout=2", "+retry=0"];

/// A network namespace created by the lab, with `lo` up.
///
/// `ip netns exec` bind-mounts `/etc/netns/<name>/*` over `/etc`, which is how
/// a namespace gets its own `resolv.conf` ([`Netns::set_resolv_conf`]); that
/// directory is removed on drop as well.
#[derive(Debug)]
pub struct Netns {
    name: String,
    etc_dir: Option<PathBuf>,
}

impl Netns {
    /// Creates `ndlab-<pid>-<counter>-<random>-<role>`.
    pub fn create(role: &str) -> Result<Self> {
        super::require_root()?;
        let name = format!("ndlab-{}-{role}", unique_suffix());
        ip(&["netns", "add", &name])?;
        // From here on the guard owns the namespace, so a failure below still
        // removes it.
        let netns = Self {
            name,
            etc_dir: None,
        };
        // No duplicate address detection on the interfaces created here.
        // While an interface's link-local address is tentative (about 1-2 s
        // after it comes up) the kernel sends no neighbour solicitation for
        // a packet it forwards, so the first forwarded IPv6 packets wait
        // seconds for the neighbour: a lab artefact (a node's interfaces
        // are up long before its pods ask), which made fail-open replies
        // through the ClusterIP miss the clients' 2 s timeout.
        netns.run(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )?;
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <name> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`),
    /// with this namespace's `/etc/netns` files in place. `ip netns exec`
    /// execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A command that runs `program` in the namespace with only the network
    /// namespace switched (`nsenter --net`). Unlike `ip netns exec`, it keeps
    /// the host's `/sys`, so `/sys/fs/bpf` stays the real bpffs: the agent
    /// needs it to pin and adopt maps. `/etc/netns` files are not applied.
    pub fn command_net_only(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace; fails unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        command::checked(self.command(program).args(args))
    }

    /// Runs `program args` inside the namespace and returns its output,
    /// whatever the exit status (for clients whose failure is the result).
    pub fn output(&self, program: &str, args: &[&str]) -> Result<Output> {
        command::output(self.command(program).args(args))
    }

    /// `dig <args>` from inside the namespace, bounded by [`DIG_BOUNDS`],
    /// parsed. A timeout is a reply too ([`Reply::answered`] is false).
    pub fn dig(&self, args: &[&str]) -> Result<Reply> {
        let args = [&DIG_BOUNDS[..], args].concat();
        Ok(Reply::parse(&self.output("dig", &args)?))
    }

    /// `kdig <args>` from inside the namespace, bounded by [`KDIG_BOUNDS`].
    pub fn kdig(&self, args: &[&str]) -> Result<Reply> {
        let args = [&KDIG_BOUNDS[..], args].concat();
        Ok(Reply::parse(&self.output("kdig", &args)?))
    }

    /// `getent <args>` from inside the namespace: glibc's resolver with the
    /// namespace's `resolv.conf` (search list, ndots:5).
    pub fn getent(&self, args: &[&str]) -> Result<Hosts> {
        Ok(Hosts::parse(&self.output("getent", args)?))
    }

    /// Absolute SNMP counters of the namespace. `-s` keeps nstat from
    /// writing its history file, which is per user, not per namespace.
    pub fn nstat(&self) -> Result<BTreeMap<String, u64>> {
        let out = self.run("nstat", &["-a", "-s", "-z"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.to_string(), fields.next()?.parse().ok()?))
            })
            .collect())
    }

    /// UDP datagrams (IPv4 and IPv6) the namespace dropped for a bad
    /// checksum: a reply with a wrong checksum otherwise looks like a
    /// timeout (checksum offload stays on in the lab).
    pub fn udp_csum_errors(&self) -> Result<u64> {
        let counters = self.nstat()?;
        ["UdpInCsumErrors", "Udp6InCsumErrors"]
            .iter()
            .map(|name| {
                counters.get(*name).copied().ok_or_else(|| {
                    LabError::Other(format!("nstat in {} shows no {name}", self.name))
                })
            })
            .sum()
    }

    /// A veth pair with both ends in this namespace, both up (for the
    /// loader's tests, which only need interfaces to attach to). It goes
    /// with the namespace, or with [`Netns::del_link`].
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        check_ifname(name)?;
        check_ifname(peer)?;
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", peer])?;
        self.ip(&["link", "set", name, "up"])?;
        self.ip(&["link", "set", peer, "up"])?;
        Ok(())
    }

    /// Deletes interface `name` (a veth takes its peer with it).
    pub fn del_link(&self, name: &str) -> Result<()> {
        self.ip(&["link", "del", name]).map(drop)
    }

    /// Writes `/etc/netns/<name>/resolv.conf`, which processes started with
    /// [`Netns::command`] see as `/etc/resolv.conf`.
    pub fn set_resolv_conf(&mut self, text: &str) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        self.etc_dir = Some(dir.clone());
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text)
            .map_err(|e| LabError::io(format!("write {}", path.display()), e))
    }

    /// Runs `f` on a thread that has entered this namespace, for code that
    /// must act inside it in-process: resolving an ifindex, attaching XDP
    /// (a link's ifindex is looked up in the caller's namespace), opening a
    /// socket. The calling thread stays where it is.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        let file =
            File::open(&path).map_err(|e| LabError::io(format!("open {}", path.display()), e))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a valid namespace fd only changes this
                    // thread's network namespace; the thread ends with `f`.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let e = std::io::Error::last_os_error();
                        return Err(LabError::io(format!("setns into {}", self.name), e));
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Starts an in-process server inside this namespace on a tokio runtime
    /// of its own (for the synchronous lab tests): the sockets are created
    /// by the thread that polls `start`, which has entered the namespace,
    /// and stay in it wherever the runtime's worker uses them. Returns the
    /// server and its runtime; drop the server first.
    pub fn serve<T: Send, F>(
        &self,
        start: impl FnOnce() -> F + Send,
    ) -> (T, tokio::runtime::Runtime)
    where
        F: std::future::Future<Output = std::io::Result<T>>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for an in-process server");
        let server = self
            .enter(|| runtime.block_on(start()))
            .expect("enter the namespace")
            .unwrap_or_else(|e| panic!("start a server in {}: {e}", self.name));
        (server, runtime)
    }

    /// The index of interface `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let c_name = std::ffi::CString::new(ifname)
            .map_err(|_| LabError::Other(format!("bad name {ifname:?}")))?;
        // SAFETY: if_nametoindex reads a valid NUL-terminated string.
        let index = self.enter(|| unsafe { libc::if_nametoindex(c_name.as_ptr()) })?;
        if index == 0 {
            return Err(LabError::Other(format!(
                "interface {ifname} does not exist in netns {}",
                self.name
            )));
        }
        Ok(index)
    }

    /// The MAC address of interface `ifname` inside this namespace (`ip
    /// netns exec` mounts the namespace's own `/sys`).
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.run("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let bytes: Option<Vec<u8>> = text
            .trim()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| LabError::Other(format!("MAC of {ifname} in {}: {text:?}", self.name)))
    }

    /// Whether `ip netns list` still shows the namespace (for leak checks).
    pub fn exists(name: &str) -> bool {
        PathBuf::from("/run/netns").join(name).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep the namespace alive after this; the
        // guards that start them (`Daemon`) are dropped before the netns.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("lab: could not remove netns {}: {e}", self.name);
        }
        if let Some(dir) = self.etc_dir.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            eprintln!("lab: could not remove {}: {e}", dir.display());
        }
    }
}
