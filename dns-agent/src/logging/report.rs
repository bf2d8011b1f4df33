//! One line for an error: its message, then each cause the message does
//! not already say. Many of the agent's errors put their cause in their own
//! message ("cannot listen on X: Address in use") and keep it as their
//! source too, so a plain walk of the chain (anyhow's `{:#}`) says it twice.
//! Hints are written last in the messages that carry one, so once the
//! repeated causes are gone, the hint ends the line.

/// The error and its causes, each said once, joined by ": ".
pub fn report(error: &anyhow::Error) -> String {
    chain(error.chain().map(|e| e.to_string()))
}

fn chain(messages: impl Iterator<Item = String>) -> String {
    let mut line = String::new();
    for message in messages {
        let message = message.trim();
        if message.is_empty() || line.contains(message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(message);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 10.0.0.1:53/udp: {source} (is the address configured on this host?)")]
    struct Bind {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Bind { source: io }).context("starting the resolver");
        assert_eq!(
            report(&e),
            "starting the resolver: cannot listen on 10.0.0.1:53/udp: Address already in use \
             (is the address configured on this host?)"
        );
        // anyhow alone says the cause twice, after the hint.
        assert!(format!("{e:#}").ends_with("host?): Address already in use"));
    }

    #[test]
    fn distinct_causes_are_kept_in_order() {
        let e = anyhow::anyhow!("no such file")
            .context("reading x")
            .context("starting");
        assert_eq!(report(&e), "starting: reading x: no such file");
    }
}
