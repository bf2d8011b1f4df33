//! Indexes of the per-CPU counters of kernel answers (`MAP_ANSWER_COUNTS`):
//! one slot per address family, query type class, rcode and AA flag of the
//! answers the XDP program sent.
//!
//! The index depends only on the parsed question and on the rcode and AA
//! flag written into the response header, never on the answers map's key or
//! value layout, so either can change without touching these counters.

/// The query types the kernel counts apart; every other type is "other".
pub const QTYPE_CLASSES: [&str; 5] = ["A", "AAAA", "SRV", "PTR", "other"];
/// Values of the 4-bit header rcode.
pub const RCODES: u32 = 16;
/// Slots in the map: families × type classes × rcodes × AA.
pub const ANSWER_COUNTERS: u32 = 2 * QTYPE_CLASSES.len() as u32 * RCODES * 2;

/// The type class of `qtype`: its index in [`QTYPE_CLASSES`].
pub const fn qtype_class(qtype: u16) -> u32 {
    match qtype {
        1 => 0,
        28 => 1,
        33 => 2,
        12 => 3,
        _ => 4,
    }
}

/// The slot of an answer. `ipv6` and `authoritative` are 0 or 1; `rcode`
/// is the header's 4 bits.
pub const fn answer_counter_index(ipv6: u32, qtype: u16, rcode: u8, authoritative: u32) -> u32 {
    let family = ipv6 & 1;
    let class = qtype_class(qtype);
    (((family * QTYPE_CLASSES.len() as u32 + class) * RCODES + (rcode as u32 & 0xf)) * 2)
        + (authoritative & 1)
}

/// What one slot counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnswerCounterKey {
    pub ipv6: bool,
    /// Index in [`QTYPE_CLASSES`].
    pub qtype_class: u8,
    pub rcode: u8,
    pub authoritative: bool,
}

impl AnswerCounterKey {
    /// The slot `index` counts (`index < ANSWER_COUNTERS`).
    pub const fn from_index(index: u32) -> Self {
        let authoritative = index & 1 == 1;
        let rest = index / 2;
        let rcode = (rest % RCODES) as u8;
        let rest = rest / RCODES;
        let classes = QTYPE_CLASSES.len() as u32;
        Self {
            ipv6: rest / classes == 1,
            qtype_class: (rest % classes) as u8,
            rcode,
            authoritative,
        }
    }

    pub const fn index(&self) -> u32 {
        let qtype = match self.qtype_class {
            0 => 1,
            1 => 28,
            2 => 33,
            3 => 12,
            _ => 0,
        };
        answer_counter_index(
            self.ipv6 as u32,
            qtype,
            self.rcode,
            self.authoritative as u32,
        )
    }

    pub const fn qtype_label(&self) -> &'static str {
        QTYPE_CLASSES[self.qtype_class as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_round_trips_and_fits() {
        for index in 0..ANSWER_COUNTERS {
            let key = AnswerCounterKey::from_index(index);
            assert_eq!(key.index(), index);
        }
        assert_eq!(answer_counter_index(1, 255, 0xff, 1), ANSWER_COUNTERS - 1);
        assert_eq!(answer_counter_index(0, 1, 0, 0), 0);
        let key = AnswerCounterKey::from_index(answer_counter_index(1, 33, 3, 0));
        assert_eq!(
            key,
            AnswerCounterKey {
                ipv6: true,
                qtype_class: 2,
                rcode: 3,
                authoritative: false
            }
        );
        assert_eq!(key.qtype_label(), "SRV");
        assert_eq!(
            AnswerCounterKey::from_index(answer_counter_index(0, 16, 0, 1)).qtype_label(),
            "other"
        );
    }
}
