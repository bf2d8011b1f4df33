//! What the command line and the environment share. Every `run` flag can
//! come from a `NODEDNS_*` variable (the DaemonSet's ConfigMap), where
//! people write booleans as `1`, `yes` or `true`, and lists as `a, b`.
//! clap alone takes only `true`/`false`, keeps the spaces after commas, and
//! blames the flag when the bad value came from a variable.

use std::ffi::OsString;
use std::fmt::Display;
use std::str::FromStr;

use clap::Command;
use clap::builder::{BoolishValueParser, ValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Every boolean flag and value in the command tree also reads `1`/`0`,
/// `yes`/`no`, `on`/`off` (any case), from the command line and the
/// environment alike.
pub fn lenient_booleans(cmd: Command) -> Command {
    let boolean = ValueParser::bool().type_id();
    cmd.mut_args(|arg| {
        if arg.get_value_parser().type_id() == boolean {
            arg.value_parser(BoolishValueParser::new())
        } else {
            arg
        }
    })
    .mut_subcommands(lenient_booleans)
}

/// A value parser for list items: the item without the spaces around it
/// (`NODEDNS_LISTEN="10.0.0.1, 10.0.0.2"`), then `T`'s own parsing.
pub fn trimmed<T>(s: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    s.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// clap's message for `error`, naming the environment variable when the
/// bad value came from one (its flag is not in `argv`, its variable is set).
pub fn explain(cmd: &Command, error: &clap::Error, argv: &[OsString]) -> String {
    let text = error.render().to_string();
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
    ) {
        return text;
    }
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return text;
    };
    let Some(long) = shown
        .split_whitespace()
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
    else {
        return text;
    };
    let Some(var) = find_env(cmd, long) else {
        return text;
    };
    let on_command_line = argv.iter().any(|a| {
        a.to_str().is_some_and(|a| {
            a.strip_prefix("--")
                .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
        })
    });
    if on_command_line || std::env::var_os(&var).is_none() {
        return text;
    }
    text.replacen(
        &format!("'{shown}'"),
        &format!("'{shown}' (from the environment variable {var})"),
        1,
    )
}

/// The environment variable of the flag `--long`, anywhere in the tree.
fn find_env(cmd: &Command, long: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .or_else(|| cmd.get_subcommands().find_map(|sc| find_env(sc, long)))
}

/// `value` as a boolean the way [`lenient_booleans`] reads it.
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "y" | "yes" | "t" | "true" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        let run = Command::new("run")
            .arg(
                Arg::new("serve_stale")
                    .long("serve-stale")
                    .env("OBSERVE_TEST_SERVE_STALE")
                    .action(ArgAction::Set)
                    .value_parser(clap::value_parser!(bool)),
            )
            .arg(
                Arg::new("keep")
                    .long("keep-on-exit")
                    .env("OBSERVE_TEST_KEEP")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("port")
                    .long("port")
                    .env("OBSERVE_TEST_PORT")
                    .value_parser(clap::value_parser!(u16)),
            )
            .arg(
                Arg::new("listen")
                    .long("listen")
                    .value_delimiter(',')
                    .value_parser(trimmed::<std::net::IpAddr>)
                    .action(ArgAction::Append),
            );
        lenient_booleans(Command::new("agent").subcommand(run))
    }

    #[test]
    fn booleans_read_yes_no_and_digits() {
        for (word, value) in [("yes", true), ("1", true), ("No", false), ("0", false)] {
            let m = command()
                .try_get_matches_from(["agent", "run", "--serve-stale", word])
                .unwrap();
            let run = m.subcommand_matches("run").unwrap();
            assert_eq!(run.get_one::<bool>("serve_stale"), Some(&value), "{word}");
        }
        assert!(
            command()
                .try_get_matches_from(["agent", "run", "--serve-stale", "maybe"])
                .is_err()
        );
    }

    #[test]
    fn list_items_lose_their_spaces() {
        let m = command()
            .try_get_matches_from(["agent", "run", "--listen", "10.0.0.1, 10.0.0.2"])
            .unwrap();
        let listen: Vec<_> = m
            .subcommand_matches("run")
            .unwrap()
            .get_many::<std::net::IpAddr>("listen")
            .unwrap()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(listen, ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn a_bad_flag_names_the_flag_only() {
        let cmd = command();
        let argv: Vec<OsString> = ["agent", "run", "--port", "abc"].map(Into::into).into();
        let e = cmd.clone().try_get_matches_from(&argv).unwrap_err();
        let text = explain(&cmd, &e, &argv);
        assert!(text.contains("'--port <port>'"), "{text}");
        assert!(!text.contains("environment"), "{text}");
        assert_eq!(find_env(&cmd, "port").as_deref(), Some("OBSERVE_TEST_PORT"));
        assert_eq!(find_env(&cmd, "listen"), None);
    }

    #[test]
    fn truthy_words() {
        assert!(truthy("Yes") && truthy("1") && truthy("on"));
        assert!(!truthy("0") && !truthy("no") && !truthy(""));
    }
}
