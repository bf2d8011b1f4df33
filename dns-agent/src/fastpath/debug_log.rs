//! The XDP program's opt-in debug records (an object built with
//! `cargo xtask build-ebpf --debug-log`), forwarded to the agent's log as
//! debug events with target `dns_ebpf`. The normal object has no aya-log
//! map, and then nothing here runs.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use aya::Ebpf;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// aya-log's ring buffer, which only a `debug-log` object has.
const LOG_MAP: &str = "AYA_LOGS";
/// How long the reader waits for records before it looks at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const RECORDS: Token = Token(0);

/// The reader thread; stopped when dropped.
pub(crate) struct DebugLog {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl DebugLog {
    /// Starts forwarding when the loaded object carries aya-log's map.
    /// A failure only costs the debug records, so it is logged, not fatal.
    pub fn start(ebpf: &mut Ebpf) -> Option<Self> {
        ebpf.map(LOG_MAP)?;
        let mut logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(logger) => logger,
            Err(e) => {
                tracing::warn!(error = %e, "the XDP program logs, but its records cannot be read");
                return None;
            }
        };
        tracing::warn!(
            "the XDP program was built with debug-log: it writes a record for every packet \
             (shown with --log-level info,dns_ebpf=debug); build it without for production"
        );
        let mut poll = match Poll::new() {
            Ok(poll) => poll,
            Err(e) => {
                tracing::warn!(error = %e, "cannot poll the XDP program's log");
                return None;
            }
        };
        let fd = logger.as_raw_fd();
        if let Err(e) = poll
            .registry()
            .register(&mut SourceFd(&fd), RECORDS, Interest::READABLE)
        {
            tracing::warn!(error = %e, "cannot poll the XDP program's log");
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("nodedns-xdp-log".into())
                .spawn(move || {
                    let mut events = Events::with_capacity(1);
                    while !stop.load(Ordering::SeqCst) {
                        // Woken by records or by the timeout, to see `stop`.
                        let _ = poll.poll(&mut events, Some(POLL_INTERVAL));
                        // The ring buffer is bounded; records the program
                        // could not reserve room for are lost, not queued.
                        logger.flush();
                    }
                })
        };
        match handle {
            Ok(handle) => Some(Self {
                stop,
                handle: Some(handle),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the XDP log reader");
                None
            }
        }
    }
}

impl Drop for DebugLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("the XDP log reader panicked");
        }
    }
}
