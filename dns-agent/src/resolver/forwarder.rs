//! Names outside the cluster zone: cache first, then one coalesced upstream
//! query per distinct question, with failover, bounds on queries in flight
//! (total, per zone, per upstream), bailiwick scrubbing and serve-stale.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RecordType};
use tokio::sync::watch;

use super::args::StubDomain;
use super::budget::{self, Budget, ZoneSlot, zone_of_question};
use super::cache::{Cache, CacheKey, CacheLookup, CachedAnswer};
use super::exchange::{ExchangeConfig, Exchanger, deadline_after};
use super::metrics::{Path, ResolverMetrics};
use super::scrub::{Scrubbed, scrub};
use super::upstreams::{Route, UpstreamHealth, route};
use crate::answer::AnswerSections;
use crate::logging::repeated::Repeated;
use crate::zone::{ForwardPolicy, Zone, ZoneLookup};

/// The result of one upstream fetch, shared by every query that waited on it.
pub type Outcome = Result<Arc<CachedAnswer>, ResponseCode>;

pub struct ForwarderConfig {
    pub defaults: Vec<SocketAddr>,
    pub stubs: Vec<StubDomain>,
    pub attempt_timeout: Duration,
    /// Upstream queries in flight: in total, per zone, per upstream.
    pub limits: budget::Limits,
    pub exchange: ExchangeConfig,
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
    /// a slot of `budget`.
    inflight: Mutex<HashMap<CacheKey, watch::Receiver<Option<Outcome>>>>,
    budget: Arc<Budget>,
    exchanger: Exchanger,
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

/// CNAME targets outside a stub domain's bailiwick asked of their own
/// servers for one question (the chain inside one reply has its own bound,
/// [`super::scrub::MAX_CHAIN`]).
const MAX_CHASE: usize = 4;

/// Why no upstream gave an answer.
enum Failed {
    /// They were asked and failed; the last error reply, if any.
    Answered(Option<Message>),
    /// None could be asked: each had its bound of queries in flight. Not
    /// cached: the name is not at fault.
    Busy,
}

/// What the client gets for a forwarded name.
pub struct Forwarded {
    pub path: Path,
    pub outcome: Outcome,
    /// The TTLs the answer carries.
    pub ttl: Ttl,
}

/// How the TTLs of a forwarded answer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Each record's own TTL, at most this (the cache entry's time left).
    AtMost(u32),
    /// Every record this TTL: a stale answer's (RFC 8767 section 4).
    Exactly(u32),
}

impl Ttl {
    /// `sections` with their TTLs written so.
    pub fn apply(self, sections: &AnswerSections) -> AnswerSections {
        match self {
            Self::AtMost(cap) => sections.with_ttl_cap(cap),
            Self::Exactly(ttl) => sections.with_ttl(ttl),
        }
    }
}

impl Forwarder {
    pub fn new(
        cfg: ForwarderConfig,
        policy: watch::Receiver<Arc<ForwardPolicy>>,
        zone: Arc<dyn Zone>,
        cache: Cache,
        metrics: Arc<ResolverMetrics>,
    ) -> Self {
        let budget = Budget::new(cfg.limits);
        let exchanger = Exchanger::new(cfg.exchange.clone(), metrics.clone());
        Self {
            cfg,
            policy,
            zone,
            cache,
            health: UpstreamHealth::default(),
            inflight: Mutex::new(HashMap::new()),
            budget,
            exchanger,
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
                    self.prefetch(&key);
                }
                Forwarded {
                    path: Path::cache_hit,
                    ttl: Ttl::AtMost(answer.remaining(now)),
                    outcome: Ok(answer),
                }
            }
            CacheLookup::Stale(stale) => {
                let stale_answer = Forwarded {
                    path: Path::stale,
                    outcome: Ok(stale),
                    ttl: Ttl::Exactly(self.cfg.stale_ttl),
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
                        Forwarded {
                            path: Path::forwarded,
                            ttl: Ttl::AtMost(answer.ttl),
                            outcome: Ok(answer),
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
                let ttl = Ttl::AtMost(outcome.as_ref().map(|a| a.ttl).unwrap_or(0));
                Forwarded {
                    path: Path::forwarded,
                    outcome,
                    ttl,
                }
            }
        }
    }

    /// Refreshes `key` in the background (a popular answer near expiry);
    /// the client that asked gets the cached answer.
    pub fn prefetch(self: &Arc<Self>, key: &CacheKey) {
        self.metrics.prefetch();
        let _ = self.fetch(key);
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
        let name = Name::from(&key.0);
        let route = self.route(&name);
        let mut inflight = self.inflight.lock().unwrap();
        if let Some(rx) = inflight.get(key) {
            self.metrics.coalesced.inc();
            return Ok(rx.clone());
        }
        let slot = match self.budget.try_zone(&zone_of_question(&name, &route.zone)) {
            Ok(slot) => slot,
            Err(bound) => {
                self.metrics.upstream_overloaded(bound);
                return Err(ResponseCode::ServFail);
            }
        };
        let (tx, rx) = watch::channel(None);
        inflight.insert(key.clone(), rx.clone());
        drop(inflight);
        let this = self.clone();
        let key = key.clone();
        // A task of its own: the fetch finishes (and fills the cache) even if
        // every waiting client gave up, which is how serve-stale refreshes.
        tokio::spawn(async move {
            let outcome = this.ask_upstreams(&key, route, slot).await;
            this.inflight.lock().unwrap().remove(&key);
            let _ = tx.send(Some(outcome));
        });
        Ok(rx)
    }

    fn route(&self, name: &Name) -> Route {
        let policy = self.policy.borrow();
        route(name, &policy, &self.cfg.stubs, &self.cfg.defaults)
    }

    /// Asks the servers of `route`, follows a CNAME chain that leaves a stub
    /// domain, and caches the result. `_slot` is the question's place in
    /// the budget, held until the answer is in.
    async fn ask_upstreams(&self, key: &CacheKey, route: Route, _slot: ZoneSlot) -> Outcome {
        let name = Name::from(&key.0);
        let qtype = key.1;
        let budget_end = tokio::time::Instant::now() + FORWARD_BUDGET;
        let (mut reply, mut scrubbed, mut bailiwick) =
            match self.ask_route(&name, qtype, &route, budget_end).await {
                Ok((reply, scrubbed)) => (reply, scrubbed, route.zone),
                Err(Failed::Busy) => return Err(ResponseCode::ServFail),
                Err(Failed::Answered(last_failure)) => return self.failed(key, last_failure),
            };
        // A stub domain's servers speak only for their zone: a chain that
        // leaves it is followed by asking the target's own servers.
        for _ in 0..MAX_CHASE {
            let Some(target) = self.chase_target(&reply, &scrubbed, qtype, &bailiwick) else {
                break;
            };
            let next_route = self.route(&target);
            let Ok((next, next_scrubbed)) = self
                .ask_route(&target, qtype, &next_route, budget_end)
                .await
            else {
                break; // the CNAME alone: the client may follow it itself
            };
            if next_scrubbed.chain[1..]
                .iter()
                .any(|n| scrubbed.chain.contains(n))
            {
                break; // a loop across servers
            }
            reply.metadata.response_code = next.metadata.response_code;
            reply.answers.extend(next.answers);
            reply.authorities = next.authorities;
            reply.additionals.extend(next.additionals);
            scrubbed
                .chain
                .extend(next_scrubbed.chain.into_iter().skip(1));
            bailiwick = next_route.zone;
        }
        let reply = self.without_cluster_records(reply);
        self.store(key, &reply)
    }

    /// The chain's last name, when the reply stops at a CNAME into a name
    /// outside `bailiwick` (its records were scrubbed) that is not ours.
    fn chase_target(
        &self,
        reply: &Message,
        scrubbed: &Scrubbed,
        qtype: RecordType,
        bailiwick: &Name,
    ) -> Option<Name> {
        let last = scrubbed.last();
        let chases = reply.metadata.response_code == ResponseCode::NoError
            && !matches!(qtype, RecordType::CNAME | RecordType::ANY)
            && scrubbed.chain.len() > 1
            && !bailiwick.zone_of(last)
            && !reply
                .answers
                .iter()
                .any(|r| r.name == *last && r.record_type() == qtype)
            && matches!(
                self.zone.lookup(&LowerName::new(last), qtype),
                ZoneLookup::NotOurs
            );
        chases.then(|| last.clone())
    }

    /// One question to the servers of `route`, in health order, each within
    /// its own bound, until one answers NOERROR or NXDOMAIN; the reply comes
    /// back scrubbed.
    async fn ask_route(
        &self,
        name: &Name,
        qtype: RecordType,
        route: &Route,
        budget_end: tokio::time::Instant,
    ) -> Result<(Message, Scrubbed), Failed> {
        if route.servers.is_empty() {
            self.no_upstream.lock().unwrap().failed(
                "no upstream configured: answering SERVFAIL (set --upstream or fix --resolv-conf)",
                name,
            );
            return Err(Failed::Answered(None));
        }
        let mut asked = false;
        let mut question = Query::query(name.clone(), qtype);
        question.query_class = DNSClass::IN;
        let mut last_failure = None;
        if route.servers.iter().all(|s| self.health.is_down(*s)) {
            self.metrics.all_upstreams_down();
        }
        for server in self.health.order(&route.servers) {
            if tokio::time::Instant::now() >= budget_end {
                break;
            }
            let Some(_slot) = self.budget.try_upstream(server) else {
                self.metrics.upstream_overloaded("upstream");
                continue;
            };
            asked = true;
            self.metrics.upstream_query(server);
            let deadline = deadline_after(self.cfg.attempt_timeout).min(budget_end);
            let sent = Instant::now();
            let result = self.exchanger.exchange(server, &question, deadline).await;
            if let Ok(reply) = &result {
                self.metrics
                    .upstream_reply(server, reply.metadata.response_code, sent.elapsed());
            }
            match result {
                Ok(mut reply) => match reply.metadata.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => {
                        self.health.success(server);
                        let scrubbed = scrub(&mut reply, name, qtype, &route.zone);
                        self.metrics.scrubbed(scrubbed.dropped);
                        return Ok((reply, scrubbed));
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
        if asked {
            Err(Failed::Answered(last_failure))
        } else {
            Err(Failed::Busy)
        }
    }

    /// Every upstream failed: remember the SERVFAIL briefly, so a storm of
    /// retries does not hammer a broken upstream.
    fn failed(&self, key: &CacheKey, last_failure: Option<Message>) -> Outcome {
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
    CachedAnswer::new(AnswerSections::from_message(reply), 0, Instant::now(), 0)
}
