//! Reading the counters and the size of the answers map.

use std::borrow::Borrow;

use aya::maps::{HashMap, MapData, PerCpuArray};
use dns_common::{AnswerEntry, AnswerKey, Counter, MAP_COUNTERS};

use super::error::FastPathError;

/// Every counter, summed over CPUs, in `Counter::ALL` order.
pub fn read_counters<T: Borrow<MapData>>(
    map: &PerCpuArray<T, u64>,
) -> Result<Vec<(Counter, u64)>, FastPathError> {
    Counter::ALL
        .iter()
        .map(|&counter| {
            let values = map
                .get(&(counter as u32), 0)
                .map_err(|e| FastPathError::map(MAP_COUNTERS, e))?;
            Ok((
                counter,
                values.iter().copied().fold(0u64, u64::wrapping_add),
            ))
        })
        .collect()
}

/// Entries in the answers map, walking its keys (at most `capacity` steps:
/// a key deleted under the walk restarts it, so under heavy churn this is
/// an estimate).
pub fn count_entries<T: Borrow<MapData>>(
    map: &HashMap<T, AnswerKey, AnswerEntry>,
    capacity: u32,
) -> u64 {
    map.keys()
        .take(capacity as usize)
        .filter(Result::is_ok)
        .count() as u64
}
