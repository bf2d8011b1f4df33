//! Names outside the cluster zone: cache first, then one coalesced upstream
//! query per distinct question, with failover, a bound on queries in flight
//! and serve-stale.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use tokio::sync::{Semaphore, watch};

use super::args::StubDomain;
use super::cache::{Cache, CacheKey, CacheLookup, CachedAnswer};
use super::exchange::{deadline_after, exchange};
use super::metrics::{Path, ResolverMetrics};
use super::upstreams::{UpstreamHealth, route};
use crate::answer::AnswerSections;
use crate::logging::repeated::Repeated;
use crate::zone::{ForwardPolicy, Zone, ZoneLookup};

/// The result of one upstream fetch, shared by every query that waited on it.
pub type Outcome = Result<Arc<CachedAnswer>, ResponseCode>;

pub struct ForwarderConfig {
    pub defaults: Vec<SocketAddr>,
    pub stubs: Vec<StubDomain>,
    pub attempt_timeout: Duration,
    pub max_outstanding: usize,
    /// Some(wait): serve stale data after trying upstreams this long.
    pub serve_stale_after: Option<Duration>,
    /// TTL of a stale answer (RFC 8767 recommends 30 s).
    pub stale_ttl: u32,
    /// After a failed refresh, stale data is served at once (no upstream
    /// wait) for this long: RFC 8767's failure recheck timer.
    pub stale_recheck: Duration,
}

pub struct Forwarder {
    cfg: ForwarderConfig,
    policy: watch::Receiver<Arc<ForwardPolicy>>,
    zone: Arc<dyn Zone>,
    pub cache: Cache,
    health: UpstreamHealth,
    /// One entry per distinct question in flight; bounded because each holds
    /// a permit of `outstanding`.
    inflight: Mutex<HashMap<CacheKey, watch::Receiver<Option<Outcome>>>>,
    outstanding: Arc<Semaphore>,
    /// Questions whose refresh failed recently: serve stale until then.
    /// Bounded by MAX_STALE_MARKS.
    stale_marks: Mutex<HashMap<CacheKey, Instant>>,
    metrics: Arc<ResolverMetrics>,
    /// Questions asked with no upstream to send them to: logged once, then
    /// summarised, not once per query.
    no_upstream: Mutex<Repeated>,
}

/// Total time spent on one question across upstreams: below the 5 s a
/// glibc client waits, so a SERVFAIL arrives before the client gives up.
const FORWARD_BUDGET: Duration = Duration::from_secs(4);

/// Questions remembered as failing (serve-stale recheck timer).
const MAX_STALE_MARKS: usize = 16_384;

/// What the client gets for a forwarded name.
pub struct Forwarded {
    pub path: Path,
    pub outcome: Outcome,
    /// Seconds to put in the answer's TTLs (after aging or serve-stale).
    pub ttl_cap: u32,
}

impl Forwarder {
    pub fn new(
        cfg: ForwarderConfig,
        policy: watch::Receiver<Arc<ForwardPolicy>>,
        zone: Arc<dyn Zone>,
        cache: Cache,
        metrics: Arc<ResolverMetrics>,
    ) -> Self {
        let outstanding = Arc::new(Semaphore::new(cfg.max_outstanding));
        Self {
            cfg,
            policy,
            zone,
            cache,
            health: UpstreamHealth::default(),
            inflight: Mutex::new(HashMap::new()),
            outstanding,
            stale_marks: Mutex::new(HashMap::new()),
            metrics,
            no_upstream: Mutex::default(),
        }
    }

    pub async fn resolve(self: &Arc<Self>, name: &Name, qtype: RecordType) -> Forwarded {
        let key: CacheKey = (LowerName::new(name), qtype);
        let now = Instant::now();
        match self.cache.get(&key, now) {
            CacheLookup::Fresh { answer, prefetch } => {
                if prefetch {
                    // Refresh in the background; this client gets the cached answer.
                    self.metrics.prefetch();
                    let _ = self.fetch(&key);
                }
                let ttl_cap = answer.remaining(now);
                Forwarded {
                    path: Path::cache_hit,
                    outcome: Ok(answer),
                    ttl_cap,
                }
            }
            CacheLookup::Stale(stale) => {
                let stale_answer = Forwarded {
                    path: Path::stale,
                    outcome: Ok(stale),
                    ttl_cap: self.cfg.stale_ttl,
                };
                let marked = self.stale_marks.lock().unwrap().get(&key).copied();
                if marked.is_some_and(|until| now < until) {
                    return stale_answer;
                }
                let wait = self.cfg.serve_stale_after.unwrap_or(Duration::ZERO);
                let fresh = match self.fetch(&key) {
                    Ok(rx) => tokio::time::timeout(wait, wait_outcome(rx)).await.ok(),
                    Err(_) => None,
                };
                match fresh {
                    Some(Ok(answer)) => {
                        self.stale_marks.lock().unwrap().remove(&key);
                        let ttl_cap = answer.ttl;
                        Forwarded {
                            path: Path::forwarded,
                            outcome: Ok(answer),
                            ttl_cap,
                        }
                    }
                    // Upstreams failed or are slow: RFC 8767 answer; a
                    // refresh still in flight continues in the background.
                    _ => {
                        self.mark_failing(key);
                        stale_answer
                    }
                }
            }
            CacheLookup::Miss => {
                let outcome = match self.fetch(&key) {
                    Ok(rx) => wait_outcome(rx).await,
                    Err(rcode) => Err(rcode),
                };
                let ttl_cap = outcome.as_ref().map(|a| a.ttl).unwrap_or(0);
                Forwarded {
                    path: Path::forwarded,
                    outcome,
                    ttl_cap,
                }
            }
        }
    }

    /// Serve `key` stale without asking upstreams until the recheck timer ends.
    fn mark_failing(&self, key: CacheKey) {
        let now = Instant::now();
        let mut marks = self.stale_marks.lock().unwrap();
        if marks.len() >= MAX_STALE_MARKS {
            marks.retain(|_, until| *until > now);
            if marks.len() >= MAX_STALE_MARKS {
                marks.clear();
            }
        }
        marks.insert(key, now + self.cfg.stale_recheck);
    }

    /// Joins the fetch in flight for `key`, or starts one.
    fn fetch(
        self: &Arc<Self>,
        key: &CacheKey,
    ) -> Result<watch::Receiver<Option<Outcome>>, ResponseCode> {
        let mut inflight = self.inflight.lock().unwrap();
        if let Some(rx) = inflight.get(key) {
            self.metrics.coalesced.inc();
            return Ok(rx.clone());
        }
        let Ok(permit) = self.outstanding.clone().try_acquire_owned() else {
            self.metrics.upstream_overloaded();
            return Err(ResponseCode::ServFail);
        };
        let (tx, rx) = watch::channel(None);
        inflight.insert(key.clone(), rx.clone());
        drop(inflight);
        let this = self.clone();
        let key = key.clone();
        // A task of its own: the fetch finishes (and fills the cache) even if
        // every waiting client gave up, which is how serve-stale refreshes.
        tokio::spawn(async move {
            let outcome = this.ask_upstreams(&key).await;
            this.inflight.lock().unwrap().remove(&key);
            let _ = tx.send(Some(outcome));
            drop(permit);
        });
        Ok(rx)
    }

    async fn ask_upstreams(&self, key: &CacheKey) -> Outcome {
        let name = Name::from(&key.0);
        let servers = {
            let policy = self.policy.borrow();
            route(&name, &policy, &self.cfg.stubs, &self.cfg.defaults)
        };
        if servers.is_empty() {
            self.no_upstream.lock().unwrap().failed(
                "no upstream configured: answering SERVFAIL (set --upstream or fix --resolv-conf)",
                &name,
            );
            return Err(ResponseCode::ServFail);
        }
        let mut question = Query::query(name.clone(), key.1);
        question.query_class = DNSClass::IN;
        let mut last_failure = None;
        let budget_end = tokio::time::Instant::now() + FORWARD_BUDGET;
        if servers.iter().all(|s| self.health.is_down(*s)) {
            self.metrics.all_upstreams_down();
        }
        for server in self.health.order(&servers) {
            if tokio::time::Instant::now() >= budget_end {
                break;
            }
            self.metrics.upstream_query(server);
            let deadline = deadline_after(self.cfg.attempt_timeout).min(budget_end);
            let sent = Instant::now();
            let result = exchange(server, &question, deadline, &self.metrics).await;
            if let Ok(reply) = &result {
                self.metrics
                    .upstream_reply(server, reply.metadata.response_code, sent.elapsed());
            }
            match result {
                Ok(reply) => match reply.metadata.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => {
                        self.health.success(server);
                        let reply = self.without_cluster_records(reply);
                        return self.store(key, &reply);
                    }
                    rcode => {
                        // SERVFAIL, REFUSED, ...: this server cannot help; try the next.
                        self.health.failure(server, &rcode);
                        self.metrics.upstream_error(server, rcode_kind(rcode));
                        last_failure = Some(reply);
                    }
                },
                Err(e) => {
                    self.health.failure(server, &e);
                    self.metrics.upstream_no_reply(server, e.kind());
                }
            }
        }
        // Every upstream failed: remember the SERVFAIL briefly, so a storm of
        // retries does not hammer a broken upstream.
        let mut failure = last_failure.unwrap_or_else(|| {
            Message::error_msg(0, hickory_proto::op::OpCode::Query, ResponseCode::ServFail)
        });
        failure.metadata.response_code = ResponseCode::ServFail;
        failure.answers.clear();
        failure.authorities.clear();
        failure.additionals.clear();
        if let Some(answer) =
            CachedAnswer::from_reply(&failure, self.cache.clamps(), Instant::now())
        {
            let _ = self.cache.insert(key.clone(), answer);
        }
        Err(ResponseCode::ServFail)
    }

    fn store(&self, key: &CacheKey, reply: &Message) -> Outcome {
        match CachedAnswer::from_reply(reply, self.cache.clamps(), Instant::now()) {
            Some(answer) => Ok(self.cache.insert(key.clone(), answer)),
            // Valid but not cacheable (TTL 0): answer it once.
            None => Ok(Arc::new(uncached(reply))),
        }
    }

    /// Upstream data never creates or shadows a cluster-zone name: records
    /// owned by a name of our zone are dropped from forwarded answers.
    fn without_cluster_records(&self, mut reply: Message) -> Message {
        let ours = |r: &hickory_proto::rr::Record| {
            !matches!(
                self.zone.lookup(&LowerName::new(&r.name), r.record_type()),
                ZoneLookup::NotOurs
            )
        };
        reply.answers.retain(|r| !ours(r));
        reply.authorities.retain(|r| !ours(r));
        reply.additionals.retain(|r| !ours(r));
        reply
    }

    pub fn is_upstream_down(&self, server: SocketAddr) -> bool {
        self.health.is_down(server)
    }
}

async fn wait_outcome(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
    match rx.wait_for(|o| o.is_some()).await {
        Ok(o) => o.clone().unwrap_or(Err(ResponseCode::ServFail)),
        // The fetch task died without an answer.
        Err(_) => Err(ResponseCode::ServFail),
    }
}

fn rcode_kind(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::ServFail => "servfail",
        ResponseCode::Refused => "refused",
        ResponseCode::NotImp => "notimp",
        ResponseCode::FormErr => "formerr",
        _ => "other_rcode",
    }
}

fn uncached(reply: &Message) -> CachedAnswer {
    CachedAnswer {
        sections: AnswerSections::from_message(reply),
        ttl: 0,
        stored: Instant::now(),
        bytes: 0,
        hits: Default::default(),
    }
}
