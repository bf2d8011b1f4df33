//! How the agent writes its logs and its fatal error.
//!
//! - Text lines carry ANSI colour only when stderr (where logs go) is a
//!   terminal and `NO_COLOR` is unset or empty (<https://no-color.org>), so
//!   container logs hold no escape codes.
//! - With `--log-json` every line is one JSON object, the fatal error at
//!   exit included ([`fatal`]).
//! - [`report`] prints an error and its causes once each, the hint last.
//! - [`repeated`] logs a condition that keeps recurring (an upstream that
//!   stays dead, an API server that stays down) when it starts and ends,
//!   and summarises it in between.

pub mod repeated;
pub mod report;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub use report::report;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Json,
    Text { colour: bool },
}

impl Style {
    /// JSON when asked; otherwise text, coloured only on a terminal and
    /// without `NO_COLOR`.
    pub fn detect(json: bool) -> Self {
        if json {
            return Self::Json;
        }
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self::Text {
            colour: !no_color && std::io::stderr().is_terminal(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "--log-level {filter:?} is not a valid filter: {reason} (use tracing's EnvFilter syntax, e.g. `info,dns_agent=debug`)"
)]
pub struct BadFilter {
    filter: String,
    reason: String,
}

/// The directive that silences kube's per-request error lines.
const KUBE_REQUEST_ERRORS_OFF: &str = "kube_client::client::builder=off";

/// Installs the global subscriber: `filter` (EnvFilter syntax) to stderr.
pub fn init(filter: &str, style: Style) -> Result<(), BadFilter> {
    let mut env_filter = EnvFilter::try_new(filter).map_err(|e| BadFilter {
        filter: filter.to_string(),
        reason: e.to_string(),
    })?;
    // kube's HTTP layer logs an error for every failed request: with the
    // API server down, a line per retry. The sources log the state changes
    // and a summary instead ([`repeated`]); a filter that names
    // kube_client gets them back.
    if !filter.contains("kube_client") {
        env_filter =
            env_filter.add_directive(KUBE_REQUEST_ERRORS_OFF.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    match style {
        Style::Json => builder.json().flatten_event(true).init(),
        Style::Text { colour } => builder.with_ansi(colour).init(),
    }
    Ok(())
}

/// Prints the error that ends the process, once: as a log event (a JSON
/// line under `--log-json`) when logging is up and lets errors through,
/// else on stderr in `style`.
pub fn fatal(error: &anyhow::Error, style: Style, logging_up: bool) {
    let text = report(error);
    if logging_up && tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!(target: "dns_agent", "{text}");
    } else {
        print_unlogged(&text, style);
    }
}

/// A message printed before (or without) the subscriber, in `style`: a JSON
/// object shaped like the subscriber's under `--log-json`.
pub fn print_unlogged(text: &str, style: Style) {
    match style {
        Style::Json => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": now_rfc3339(),
                "level": "ERROR",
                "message": text,
                "target": "dns_agent",
            })
        ),
        Style::Text { .. } => eprintln!("dns-agent: error: {text}"),
    }
}

/// The current time as the subscriber writes it (UTC, RFC 3339).
fn now_rfc3339() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        now.subsec_micros()
    )
}

/// Year, month and day of `days` since 1970-01-01 (Howard Hinnant's
/// algorithm for the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn json_unless_asked_otherwise() {
        assert_eq!(Style::detect(true), Style::Json);
        assert!(matches!(Style::detect(false), Style::Text { .. }));
    }
}
