//! The agent's metrics: one Prometheus registry for the `nodedns_` families,
//! shared by every module (each registers into it directly or through
//! [`Registry::sub_registry_with_prefix`]); the CoreDNS-compatible families
//! ([`coredns`], `coredns_` prefix, `--coredns-metrics`); the standard
//! `process_*` families ([`process`]); and the page `/metrics` serves
//! ([`exposition`]: Prometheus text 0.0.4 or OpenMetrics, by `Accept`).

pub mod coredns;
pub mod exposition;
mod histogram;
pub mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::registry::Registry;

pub use exposition::{Exposition, Format};

/// Declares a struct of metric families and the constructor that makes each
/// family empty and registers it: a field's doc comment is its Prometheus
/// help text, the field's name is the family's unless `as` names it, and
/// `= expr` builds one that needs a constructor (a histogram's buckets). So one place says what each metric
/// is. `, under "prefix"` registers them in a sub-registry; a trailing
/// `plus { .. }` block declares plain fields, passed to the constructor,
/// and a `state { field: Type = init, }` block after it plain fields the
/// constructor initialises itself.
///
/// ```ignore
/// metric_families! {
///     /// The struct's docs.
///     pub struct Families, registered by pub fn register, under "cache" {
///         /// The count of cache hits
///         pub hits: Counter,
///         /// Time to answer
///         latency: Family<L, Histogram, Buckets> as "duration_seconds"
///             = Family::new_with_constructor(Buckets),
///     }
/// }
/// ```
///
/// `registered later by pub fn register` declares the families only (the
/// struct derives what it needs, usually `Default` and `Clone`) and a
/// `register(&self, registry)` that registers clones of them, for a struct
/// that exists before the registry does.
macro_rules! metric_families {
    (@new) => {
        Default::default()
    };
    (@new $init:expr) => {
        $init
    };
    (@name $field:ident) => {
        stringify!($field)
    };
    (@name $field:ident $metric:literal) => {
        $metric
    };
    (@within $registry:ident) => {
        $registry
    };
    (@within $registry:ident, $prefix:literal) => {
        $registry.sub_registry_with_prefix($prefix)
    };
    (@register $families:ident into $within:expr, $( $field:ident as $metric:expr, $help:expr; )*) => {{
        let within = $within;
        $( within.register($metric, $help.trim(), $families.$field.clone()); )*
    }};
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident,
        registered later by $reg_vis:vis fn $reg:ident $(, under $prefix:literal)? {
            $(
                #[doc = $help:literal]
                $(#[doc = $more:literal])*
                $field_vis:vis $field:ident: $ty:ty $(as $metric:literal)?,
            )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( #[doc = $help] $(#[doc = $more])* $field_vis $field: $ty, )*
        }

        impl $name {
            $reg_vis fn $reg(&self, registry: &mut $crate::metrics::Registry) {
                $crate::metrics::metric_families!(@register self
                    into $crate::metrics::metric_families!(@within registry $(, $prefix)?),
                    $( $field as $crate::metrics::metric_families!(@name $field $($metric)?),
                        concat!($help $(, $more)*); )*);
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident,
        registered by $ctor_vis:vis fn $ctor:ident $(, under $prefix:literal)? {
            $(
                #[doc = $help:literal]
                $(#[doc = $more:literal])*
                $field_vis:vis $field:ident: $ty:ty $(as $metric:literal)? $(= $init:expr)?,
            )*
        }
        $(plus {
            $( $(#[$plain_meta:meta])* $plain_vis:vis $plain:ident: $plain_ty:ty, )*
        })?
        $(state {
            $( $(#[$state_meta:meta])* $state_vis:vis $state:ident: $state_ty:ty = $state_init:expr, )*
        })?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( #[doc = $help] $(#[doc = $more])* $field_vis $field: $ty, )*
            $($( $(#[$plain_meta])* $plain_vis $plain: $plain_ty, )*)?
            $($( $(#[$state_meta])* $state_vis $state: $state_ty, )*)?
        }

        impl $name {
            $ctor_vis fn $ctor(
                registry: &mut $crate::metrics::Registry
                $($(, $plain: $plain_ty)*)?
            ) -> Self {
                let families = Self {
                    $( $field: $crate::metrics::metric_families!(@new $($init)?), )*
                    $($( $plain, )*)?
                    $($( $state: $state_init, )*)?
                };
                $crate::metrics::metric_families!(@register families
                    into $crate::metrics::metric_families!(@within registry $(, $prefix)?),
                    $( $field as $crate::metrics::metric_families!(@name $field $($metric)?),
                        concat!($help $(, $more)*); )*);
                families
            }
        }
    };
}
pub(crate) use metric_families;

/// Metrics prefix (without the trailing underscore, which the registry adds).
pub const PREFIX: &str = "nodedns";

/// A fresh registry with the project's prefix, holding the agent-wide
/// `nodedns_build_info` and `nodedns_panics_total`.
pub fn new_registry() -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(AgentCollector));
    registry
}

/// The release, and the source revision (build.rs: "unknown" when the
/// build could not tell).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("NODEDNS_GIT_REVISION");

/// Panics anywhere in the process since it started (the hook installed by
/// [`count_panics`]); `nodedns_panics_total` and `coredns_panics_total`.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts every panic, then lets the previous hook report it as before.
/// Call once, early in `main`.
pub fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        previous(info);
    }));
}

pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// `nodedns_build_info` and `nodedns_panics_total`.
#[derive(Debug, Default)]
pub struct AgentCollector;

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let info = ConstGauge::new(1i64);
        let labels = [("version", VERSION), ("revision", REVISION)];
        info.encode(
            encoder
                .encode_descriptor(
                    "build_info",
                    "Always 1, labelled by the agent's version and source revision",
                    None,
                    MetricType::Gauge,
                )?
                .encode_family(&labels)?,
        )?;
        ConstCounter::new(panics()).encode(encoder.encode_descriptor(
            "panics",
            "Panics in the agent since it started (each also logged)",
            None,
            MetricType::Counter,
        )?)
    }
}

/// A collector registered now whose metrics come later (the fast path's,
/// once it has loaded): it encodes nothing until [`Deferred::set`].
#[derive(Debug, Clone, Default)]
pub struct Deferred(Arc<OnceLock<Box<dyn Collector>>>);

impl Deferred {
    /// The collector to encode from now on (only the first one counts).
    pub fn set(&self, collector: Box<dyn Collector>) {
        let _ = self.0.set(collector);
    }
}

impl Collector for Deferred {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(collector) => collector.encode(encoder),
            None => Ok(()),
        }
    }
}
