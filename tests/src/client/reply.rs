//! What `dig` and `kdig` print, parsed: the one reader of their output.

use std::process::Output;

/// One record line of a section: `owner TTL class TYPE data...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub owner: String,
    pub ttl: u32,
    pub rtype: String,
    /// The rdata as printed, fields joined by one space.
    pub data: String,
}

impl Record {
    /// `TYPE data`: the record without owner and TTL, to compare two
    /// servers' answers whose TTLs differ by their age.
    pub fn typed(&self) -> String {
        format!("{} {}", self.rtype, self.data)
    }
}

/// A DNS reply as `dig` or `kdig` printed it (their default, multi-section
/// output), or the absence of one.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// `NOERROR`, `NXDOMAIN`, ...; empty when no reply came.
    pub status: String,
    /// Header flags as printed (`qr aa rd ra`).
    pub flags: Vec<String>,
    /// The question as the server echoed it (its owner name's case kept).
    pub question: String,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    /// The additional section's records (not the OPT pseudo-record).
    pub additional: Vec<Record>,
    /// dig's EDNS line (`; EDNS: version: 0, flags: do; udp: 1232`).
    pub edns: Option<String>,
    /// Query time in ms as the client measured it (dig: whole ms, kdig: 0.1).
    pub millis: Option<f64>,
    /// Everything the client printed, for failure messages.
    pub raw: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Other,
    Question,
    Answer,
    Authority,
    Additional,
}

impl Reply {
    pub fn parse(out: &Output) -> Self {
        Self::parse_text(&String::from_utf8_lossy(&out.stdout))
    }

    pub fn parse_text(text: &str) -> Self {
        let mut reply = Reply {
            raw: text.to_string(),
            ..Default::default()
        };
        let mut section = Section::Other;
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                section = Section::Other;
                continue;
            }
            if line.contains("SECTION:") {
                section = match line {
                    l if l.contains("QUESTION") => Section::Question,
                    l if l.contains("ANSWER") => Section::Answer,
                    l if l.contains("AUTHORITY") => Section::Authority,
                    l if l.contains("ADDITIONAL") => Section::Additional,
                    _ => Section::Other,
                };
                continue;
            }
            reply.header_line(line);
            match section {
                Section::Question if reply.question.is_empty() => {
                    reply.question = line.trim_start_matches(';').trim().to_string();
                }
                Section::Answer | Section::Authority | Section::Additional
                    if !line.starts_with(';') =>
                {
                    let Some(record) = record(line) else { continue };
                    match section {
                        Section::Answer => reply.answers.push(record),
                        Section::Authority => reply.authority.push(record),
                        _ => reply.additional.push(record),
                    }
                }
                _ => {}
            }
        }
        reply
    }

    /// Status, flags, EDNS and timing, wherever dig or kdig print them.
    fn header_line(&mut self, line: &str) {
        if self.status.is_empty()
            && let Some((_, rest)) = line.split_once("status: ")
        {
            self.status = rest
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
        }
        // dig: ";; flags: qr rd ra; QUERY: 1, ..."; kdig: ";; Flags: qr rd ra; QUERY: 1; ...".
        if self.flags.is_empty()
            && let Some(rest) = line
                .strip_prefix(";; flags: ")
                .or_else(|| line.strip_prefix(";; Flags: "))
        {
            let flags = rest.split(';').next().unwrap_or_default();
            self.flags = flags.split_whitespace().map(String::from).collect();
        }
        if line.starts_with("; EDNS:") {
            self.edns = Some(line.to_string());
        }
        // dig: ";; Query time: 3 msec"; kdig: ";; From 169.254.20.10@53(UDP) in 0.2 ms".
        let time = line.strip_prefix(";; Query time: ").or_else(|| {
            line.starts_with(";; From ")
                .then(|| line.rsplit(" in ").next())?
        });
        if let Some(time) = time {
            self.millis = time.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }

    /// Whether any reply came (a timeout prints none).
    pub fn answered(&self) -> bool {
        !self.status.is_empty()
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The data of the answers of type `rtype`, in order.
    pub fn rdata(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }

    /// [`Reply::rdata`] sorted, to compare with an expected set.
    pub fn sorted_rdata(&self, rtype: &str) -> Vec<String> {
        let mut data = self.rdata(rtype);
        data.sort();
        data
    }

    /// The data of every answer record (addresses, targets), in order.
    pub fn data(&self) -> Vec<String> {
        self.answers.iter().map(|r| r.data.clone()).collect()
    }

    /// The A and AAAA answers' addresses, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
            .map(|r| r.data.clone())
            .collect()
    }

    /// Whether AUTHORITY carries the zone's SOA (negative answers must).
    pub fn has_soa(&self) -> bool {
        self.authority.iter().any(|r| r.rtype == "SOA")
    }
}

fn record(line: &str) -> Option<Record> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 5 {
        return None;
    }
    Some(Record {
        owner: fields[0].to_string(),
        ttl: fields[1].parse().ok()?,
        rtype: fields[3].to_string(),
        data: fields[4..].join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIG: &str = "\
; <<>> DiG 9.18.33 <<>> @169.254.20.10 web.default.svc.cluster.local A
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;WeB.default.svc.cluster.local.\tIN\tA

;; ANSWER SECTION:
WeB.default.svc.cluster.local. 30 IN\tA\t10.96.0.20

;; Query time: 3 msec
;; SERVER: 169.254.20.10#53(169.254.20.10) (UDP)
";

    const KDIG: &str = "\
;; ->>HEADER<<- opcode: QUERY; status: NXDOMAIN; id: 7
;; Flags: qr aa rd ra; QUERY: 1; ANSWER: 0; AUTHORITY: 1; ADDITIONAL: 0

;; QUESTION SECTION:
;; nope.shop.svc.cluster.local.\tIN\tA

;; AUTHORITY SECTION:
cluster.local.\t5\tIN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5

;; Received 98 B
;; Time 2024-01-01 00:00:00 UTC
;; From 169.254.20.10@53(UDP) in 0.2 ms
";

    #[test]
    fn reads_dig_output() {
        let r = Reply::parse_text(DIG);
        assert_eq!(r.status, "NOERROR");
        assert_eq!(r.flags, ["qr", "aa", "rd", "ra"]);
        assert!(r.has_flag("aa") && !r.has_flag("tc"));
        assert_eq!(r.question, "WeB.default.svc.cluster.local.\tIN\tA");
        assert_eq!(r.rdata("A"), ["10.96.0.20"]);
        assert_eq!(r.answers[0].ttl, 30);
        assert_eq!(r.answers[0].typed(), "A 10.96.0.20");
        assert_eq!(
            r.edns.as_deref(),
            Some("; EDNS: version: 0, flags:; udp: 1232")
        );
        assert_eq!(r.millis, Some(3.0));
        assert!(r.additional.is_empty(), "OPT is not a record");
    }

    #[test]
    fn reads_the_additional_section() {
        let text = "\
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2

;; ANSWER SECTION:
cluster.local.\t30\tIN\tNS\tkube-dns.kube-system.svc.cluster.local.

;; ADDITIONAL SECTION:
kube-dns.kube-system.svc.cluster.local. 30 IN A\t10.96.0.10
";
        let r = Reply::parse_text(text);
        assert_eq!(r.additional.len(), 1);
        assert_eq!(r.additional[0].typed(), "A 10.96.0.10");
    }

    #[test]
    fn reads_kdig_output() {
        let r = Reply::parse_text(KDIG);
        assert_eq!(r.status, "NXDOMAIN");
        assert_eq!(r.flags, ["qr", "aa", "rd", "ra"]);
        assert!(r.answers.is_empty() && r.has_soa());
        assert_eq!(r.millis, Some(0.2));
    }

    #[test]
    fn no_reply_is_not_answered() {
        let r = Reply::parse_text(";; communications error: timed out\n");
        assert!(!r.answered());
        assert!(r.answers.is_empty());
    }
}
