//! Question names of any wire length, for the parser's length edges.

use hickory_proto::rr::{Label, Name};
use hickory_proto::serialize::binary::BinEncodable;

/// The longest wire name DNS allows.
pub const MAX_WIRE_NAME: usize = 255;

/// How the labels of a test name are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Labels of 63 bytes, then what is left.
    Long,
    /// A first label `a 00 01`, whose wire form begins like type 865 (the
    /// bytes `03 61`), class IN; then labels of 63 bytes. A parser that
    /// read type and class from the name's start would find both.
    TypeLike,
}

/// The query type a `TypeLike` name's first bytes spell.
pub const TYPE_LIKE_QTYPE: u16 = 865;

/// A name of exactly `wire_len` bytes in wire form (root label included),
/// or `None` where no valid name has that length (0, 2, over 255;
/// `TypeLike` below 5 and at 6).
pub fn name_of_len(wire_len: usize, layout: Layout) -> Option<Name> {
    if wire_len == 0 || wire_len == 2 || wire_len > MAX_WIRE_NAME {
        return None;
    }
    let mut labels: Vec<Vec<u8>> = Vec::new();
    // Bytes left for labels: each takes one length byte plus 1..=63.
    let mut left = wire_len - 1;
    if layout == Layout::TypeLike {
        if left < 4 || left == 5 {
            return None;
        }
        labels.push(vec![b'a', 0, 1]);
        left -= 4;
    }
    let mut letter = 0u8;
    while left > 0 {
        let mut take = left.min(64);
        if left - take == 1 {
            // One byte cannot be a label: leave two.
            take -= 1;
        }
        labels.push(
            (0..take - 1)
                .map(|i| b'a' + (letter + i as u8) % 26)
                .collect(),
        );
        letter = letter.wrapping_add(7);
        left -= take;
    }
    let labels: Vec<Label> = labels
        .iter()
        .map(|l| Label::from_raw_bytes(l).unwrap())
        .collect();
    let mut name = Name::from_labels(labels).unwrap();
    name.set_fqdn(true);
    assert_eq!(name.to_bytes().unwrap().len(), wire_len, "{name:?}");
    Some(name)
}
