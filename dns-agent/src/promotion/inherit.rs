//! Inheriting the entries a previous agent left in a reused kernel map
//! (`--keep-on-exit`). Without it a Service changed or deleted while no
//! agent ran would be answered from the old entry until that expires, and
//! the inherited entries would fill the map behind promotion's accounting.
//! (Maps are *reused* by the loader and links *adopted* by the attacher;
//! entries are *inherited* here. The log line and the `map_adopted` metric
//! keep the wording users already search for.)

use std::time::{Duration, Instant};

use dns_common::{AnswerEntry, AnswerKey};
use hickory_proto::rr::LowerName;

use super::Promoter;
use super::encoding::{boot_time_ns, decode, key_for};
use super::metrics::InheritAction;
use super::state::{Installed, Key, Origin};
use crate::zone::ZoneLookup;

/// An inherited entry with less lifetime left is deleted, not tracked.
const MIN_REMAINING: Duration = Duration::from_secs(1);
/// The content hash of an inherited entry: it matches no real answer, so the
/// next install or re-derivation of that key rewrites it.
const UNKNOWN_CONTENT: u64 = 0;

/// What inheriting did, per [`InheritAction`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub rederived: usize,
    pub withdrawn: usize,
    pub tracked: usize,
    pub pending: usize,
    pub expired: usize,
    pub corrupt: usize,
    pub foreign: usize,
    /// Already rewritten by this agent before inheriting reached them.
    pub superseded: usize,
}

impl Inherited {
    fn count(&mut self, action: InheritAction) {
        let n = match action {
            InheritAction::rederived => &mut self.rederived,
            InheritAction::withdrawn => &mut self.withdrawn,
            InheritAction::tracked => &mut self.tracked,
            InheritAction::pending => &mut self.pending,
            InheritAction::expired => &mut self.expired,
            InheritAction::corrupt => &mut self.corrupt,
            InheritAction::foreign => &mut self.foreign,
        };
        *n += 1;
    }
}

impl Promoter {
    /// Takes over the entries already in the sink: in-zone ones are
    /// re-derived from the zone at once (before its first sync they keep
    /// serving, tracked, until the sync's re-derivation), upstream ones are
    /// tracked with their remaining lifetime, expired, undecodable and
    /// foreign ones are deleted. Synchronous (map syscalls, zone lookups);
    /// bounded by the map's capacity.
    pub fn inherit(&self) -> Inherited {
        let started = Instant::now();
        let mut summary = Inherited::default();
        // Keys first, then one entry at a time: a full map of whole entries
        // would be ~13 MB at the default 16384 entries.
        for map_key in self.sink.existing_keys() {
            let Some(entry) = self.sink.read(&map_key) else {
                continue; // deleted since the walk (a previous agent still running)
            };
            match self.inherit_one(&map_key, &entry) {
                Some(action) => {
                    summary.count(action);
                    self.metrics.inherited(action);
                }
                None => summary.superseded += 1,
            }
        }
        let installed = self.installed();
        self.metrics.map_entries.set(installed as i64);
        let s = &summary;
        if *s
            == (Inherited {
                superseded: s.superseded,
                ..Inherited::default()
            })
        {
            tracing::debug!(superseded = s.superseded, "no kernel answers to inherit");
            return summary;
        }
        tracing::info!(
            rederived = s.rederived,
            withdrawn = s.withdrawn,
            tracked = s.tracked,
            pending = s.pending,
            expired = s.expired,
            corrupt = s.corrupt,
            foreign = s.foreign,
            superseded = s.superseded,
            installed,
            took_ms = started.elapsed().as_millis() as u64,
            "adopted the kernel answers a previous agent left"
        );
        summary
    }

    /// `None` when this agent already installed the key itself.
    fn inherit_one(&self, map_key: &AnswerKey, entry: &AnswerEntry) -> Option<InheritAction> {
        let decoded = match decode(map_key, entry) {
            // The key must be exactly the one this agent would use for the
            // name, or the entry could never be updated or deleted by it.
            Ok(d) if key_for(&d.name, d.qtype).as_ref() == Ok(map_key) => d,
            Ok(d) => {
                tracing::debug!(name = %d.name, "inherited entry under a non-canonical key");
                return Some(self.delete_inherited(map_key, InheritAction::corrupt));
            }
            Err(e) => {
                tracing::debug!(error = %e, "inherited entry does not decode");
                return Some(self.delete_inherited(map_key, InheritAction::corrupt));
            }
        };
        let remaining =
            Duration::from_nanos(decoded.expires_boot_ns.saturating_sub(boot_time_ns()));
        if remaining < MIN_REMAINING {
            return Some(self.delete_inherited(map_key, InheritAction::expired));
        }
        let key: Key = (LowerName::new(&decoded.name), decoded.qtype);
        let lookup = self.zone.lookup(&key.0, key.1);
        let origin = match lookup {
            // Upstream answers are never promoted authoritative: this one came
            // from a zone the agent no longer serves (another --cluster-domain).
            ZoneLookup::NotOurs if decoded.authoritative => {
                return Some(self.delete_inherited(map_key, InheritAction::foreign));
            }
            ZoneLookup::NotOurs => Origin::Upstream,
            // A chased answer: when its forwarded part was fetched is not
            // known here, so the next query fetches and installs it again.
            ZoneLookup::Alias(_) => {
                return Some(self.delete_inherited(map_key, InheritAction::withdrawn));
            }
            ZoneLookup::NotReady | ZoneLookup::Answer(_) => Origin::Cluster,
        };
        {
            let mut state = self.state.lock().unwrap();
            if state.installed.contains_key(&key) {
                return None;
            }
            let inherited = Installed {
                origin,
                map_key: *map_key,
                last_used: 0,
                expires: Instant::now() + remaining,
                content: UNKNOWN_CONTENT,
                last_hit: None,
            };
            state.insert(key.clone(), inherited);
        }
        Some(match lookup {
            ZoneLookup::Answer(answer) => {
                // Tracked first, so an answer that no longer encodes deletes it.
                self.install_cluster(&key, &answer, None);
                if self.state.lock().unwrap().installed.contains_key(&key) {
                    InheritAction::rederived
                } else {
                    InheritAction::withdrawn
                }
            }
            ZoneLookup::NotReady => InheritAction::pending,
            ZoneLookup::NotOurs => InheritAction::tracked,
            ZoneLookup::Alias(_) => InheritAction::withdrawn, // deleted above
        })
    }

    fn delete_inherited(&self, map_key: &AnswerKey, action: InheritAction) -> InheritAction {
        if let Err(e) = self.sink.delete(map_key) {
            tracing::warn!(error = %e, ?action, "could not delete an inherited kernel map entry");
        }
        action
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;
    use std::str::FromStr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, RwLock};

    use dns_common::AnswerEntry;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record, RecordType};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::answer::AnswerSections;
    use crate::promotion::encoding::{EntrySpec, encode};
    use crate::promotion::metrics::{InheritLabels, PromotionMetrics};
    use crate::promotion::sink::{AnswerSink, MemorySink};
    use crate::promotion::testing::{self, cluster_soa, name};
    use crate::zone::Zone;

    const ZONE: &str = "cluster.local.";

    /// `cluster.local` with A records only; everything else is not ours.
    struct Services {
        a: RwLock<HashMap<LowerName, Ipv4Addr>>,
        ready: AtomicBool,
        changes: watch::Sender<u64>,
    }

    impl Zone for Services {
        fn lookup(&self, name: &LowerName, qtype: RecordType) -> ZoneLookup {
            if !LowerName::from_str(ZONE).unwrap().zone_of(name) {
                return ZoneLookup::NotOurs;
            }
            if !self.ready.load(Ordering::Relaxed) {
                return ZoneLookup::NotReady;
            }
            let mut answer = AnswerSections::new(ResponseCode::NoError);
            match self.a.read().unwrap().get(name) {
                Some(ip) if qtype == RecordType::A => {
                    answer
                        .answers
                        .push(Record::from_rdata(name.into(), 30, RData::A(A(*ip))))
                }
                found => {
                    if found.is_none() {
                        answer.rcode = ResponseCode::NXDomain;
                    }
                    answer.authority.push(cluster_soa());
                }
            }
            ZoneLookup::Answer(answer)
        }
        fn changes(&self) -> watch::Receiver<u64> {
            self.changes.subscribe()
        }
        fn is_ready(&self) -> bool {
            self.ready.load(Ordering::Relaxed)
        }
    }

    const WEB: &str = "web.default.svc.cluster.local.";
    const GONE: &str = "gone.default.svc.cluster.local.";
    const POPULAR: &str = "popular.example.";

    /// An entry as a previous agent would have written it.
    fn old_entry(
        qname: &str,
        ip: Ipv4Addr,
        authoritative: bool,
        lifetime_secs: i64,
    ) -> (AnswerKey, AnswerEntry) {
        let q = name(qname);
        let mut sections = AnswerSections::new(ResponseCode::NoError);
        sections
            .answers
            .push(Record::from_rdata(q.clone(), 30, RData::A(A(ip))));
        let expires = boot_time_ns() as i64 + lifetime_secs * 1_000_000_000;
        encode(&EntrySpec {
            qname: &q,
            qtype: RecordType::A,
            sections: &sections,
            authoritative,
            max_ttl: 30,
            expires_boot_ns: expires.max(1) as u64,
            generation: 1,
        })
        .unwrap()
    }

    struct Setup {
        promoter: Arc<Promoter>,
        sink: Arc<MemorySink>,
        zone: Arc<Services>,
        metrics: Arc<PromotionMetrics>,
    }

    /// A map left by a previous agent: web (its Service has a new ClusterIP
    /// since), gone (Service deleted), a hot upstream name, an expired one,
    /// a torn entry and one from a zone this agent does not serve.
    fn inherited(zone_ready: bool) -> Setup {
        let sink = Arc::new(MemorySink::new(16));
        let old = [
            old_entry(WEB, Ipv4Addr::new(10, 96, 0, 1), true, 100),
            old_entry(GONE, Ipv4Addr::new(10, 96, 0, 9), true, 100),
            old_entry(POPULAR, Ipv4Addr::new(192, 0, 2, 1), false, 60),
            old_entry("stale.example.", Ipv4Addr::new(192, 0, 2, 2), false, -5),
            old_entry("web.other.zone.", Ipv4Addr::new(10, 1, 0, 1), true, 100),
        ];
        for (k, e) in &old {
            sink.put(k, e).unwrap();
        }
        let (k, mut torn) = old_entry("torn.example.", Ipv4Addr::new(192, 0, 2, 3), false, 60);
        torn.key_hash += 1;
        sink.put(&k, &torn).unwrap();

        let zone = Arc::new(Services {
            a: RwLock::new(HashMap::from([(
                LowerName::from_str(WEB).unwrap(),
                Ipv4Addr::new(10, 96, 0, 2),
            )])),
            ready: AtomicBool::new(zone_ready),
            changes: watch::channel(0).0,
        });
        let (promoter, metrics) =
            testing::promoter(sink.clone(), zone.clone(), Duration::from_secs(120));
        Setup {
            promoter,
            sink,
            zone,
            metrics,
        }
    }

    /// What the map holds for `qname` A: (rcode, first A address).
    fn served(sink: &MemorySink, qname: &str) -> Option<(ResponseCode, Option<Ipv4Addr>)> {
        let key = key_for(&name(qname), RecordType::A).unwrap();
        let d = decode(&key, &sink.get(&key)?).unwrap();
        let ip = d.sections.answers.first().and_then(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        Some((d.sections.rcode, ip))
    }

    fn agrees_with_zone(sink: &MemorySink) -> bool {
        served(sink, WEB) == Some((ResponseCode::NoError, Some(Ipv4Addr::new(10, 96, 0, 2))))
            && served(sink, GONE) == Some((ResponseCode::NXDomain, None))
            && served(sink, POPULAR)
                == Some((ResponseCode::NoError, Some(Ipv4Addr::new(192, 0, 2, 1))))
            && sink.len() == 3
    }

    /// What inheriting at construction counted, from its metrics.
    fn counted(metrics: &PromotionMetrics) -> Inherited {
        let n = |action| {
            metrics
                .map_adopted
                .get_or_create(&InheritLabels { action })
                .get() as usize
        };
        Inherited {
            rederived: n(InheritAction::rederived),
            withdrawn: n(InheritAction::withdrawn),
            tracked: n(InheritAction::tracked),
            pending: n(InheritAction::pending),
            expired: n(InheritAction::expired),
            corrupt: n(InheritAction::corrupt),
            foreign: n(InheritAction::foreign),
            superseded: 0,
        }
    }

    #[test]
    fn inheriting_rederives_zone_entries_and_drops_the_bad_ones() {
        let s = inherited(true);
        assert_eq!(
            counted(&s.metrics),
            Inherited {
                rederived: 2,
                tracked: 1,
                expired: 1,
                corrupt: 1,
                foreign: 1,
                ..Inherited::default()
            }
        );
        assert!(agrees_with_zone(&s.sink), "map after inheriting");
        assert_eq!(s.promoter.installed(), 3, "inherited entries are accounted");
        assert_eq!(s.metrics.map_entries.get(), 3);

        // Tracked like the promoter's own: a later zone change reaches them.
        s.zone
            .a
            .write()
            .unwrap()
            .remove(&LowerName::from_str(WEB).unwrap());
        s.promoter.refresh(true, Some(1));
        assert_eq!(served(&s.sink, WEB), Some((ResponseCode::NXDomain, None)));
    }

    #[test]
    fn inherited_entries_count_against_capacity() {
        let s = inherited(true);
        // 3 of 16 slots are inherited: the 14th new name evicts the least
        // recently used entry instead of failing to write.
        for i in 0..14 {
            let q = name(&format!("svc{i}.default.svc.cluster.local."));
            s.zone
                .a
                .write()
                .unwrap()
                .insert(LowerName::new(&q), Ipv4Addr::new(10, 96, 1, i));
            let ZoneLookup::Answer(a) = s.zone.lookup(&LowerName::new(&q), RecordType::A) else {
                unreachable!()
            };
            s.promoter.cluster_answer(&q, RecordType::A, &a, 0);
        }
        assert_eq!(s.metrics.map_write_errors.get(), 0);
        assert_eq!(s.metrics.evictions(), 1);
        assert_eq!(s.sink.len(), 16);
        assert_eq!(s.promoter.installed(), 16);
        // The victim is an inherited entry (least recently used), not one of
        // the names this agent was just asked for.
        for i in 0..14 {
            let q = format!("svc{i}.default.svc.cluster.local.");
            assert!(served(&s.sink, &q).is_some(), "{q} installed");
        }
    }

    #[test]
    fn entries_inherited_before_the_first_sync_are_rederived_by_it() {
        let s = inherited(false);
        let summary = counted(&s.metrics);
        assert_eq!((summary.pending, summary.tracked), (2, 1));
        let old_web = Some((ResponseCode::NoError, Some(Ipv4Addr::new(10, 96, 0, 1))));
        assert_eq!(served(&s.sink, WEB), old_web, "kept until the zone can say");
        s.promoter.refresh(false, None);
        assert_eq!(served(&s.sink, WEB), old_web, "renewal waits for the sync");
        s.zone.ready.store(true, Ordering::Relaxed);
        s.promoter.refresh(true, Some(1));
        assert!(agrees_with_zone(&s.sink));
    }

    #[test]
    fn inheriting_again_changes_nothing() {
        let s = inherited(true);
        let writes = s.metrics.map_writes.get();
        let again = s.promoter.inherit();
        assert_eq!(
            again,
            Inherited {
                superseded: 3,
                ..Inherited::default()
            }
        );
        assert_eq!(s.metrics.map_writes.get(), writes);
        assert!(agrees_with_zone(&s.sink));
    }

    #[tokio::test]
    async fn the_running_promoter_rederives_pending_entries_at_the_first_sync() {
        let s = inherited(false);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(s.promoter.clone().run(cancel.clone()));
        s.zone.ready.store(true, Ordering::Relaxed);
        s.zone.changes.send_modify(|g| *g += 1);
        // Bounded wait for the outcome (not a timing assertion).
        for _ in 0..100 {
            if agrees_with_zone(&s.sink) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(agrees_with_zone(&s.sink));
        cancel.cancel();
        task.await.unwrap();
    }
}
