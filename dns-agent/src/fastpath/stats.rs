//! Reading the counters and the size of the answers map.

use std::borrow::Borrow;

use aya::maps::{HashMap, MapData, PerCpuArray};
use dns_common::answer_counters::{ANSWER_COUNTERS, AnswerCounterKey};
use dns_common::{Counter, IndexValue, MAP_ANSWER_COUNTS, MAP_COUNTERS};

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

/// Every kernel answer counter that is not zero, summed over CPUs.
pub fn read_answer_counts<T: Borrow<MapData>>(
    map: &PerCpuArray<T, u64>,
) -> Result<Vec<(AnswerCounterKey, u64)>, FastPathError> {
    let mut counts = Vec::new();
    for index in 0..ANSWER_COUNTERS {
        let values = map
            .get(&index, 0)
            .map_err(|e| FastPathError::map(MAP_ANSWER_COUNTS, e))?;
        let total = values.iter().copied().fold(0u64, u64::wrapping_add);
        if total > 0 {
            counts.push((AnswerCounterKey::from_index(index), total));
        }
    }
    Ok(counts)
}

/// Entries in the answers index, walking its keys (at most `capacity` steps:
/// a key deleted under the walk restarts it, so under heavy churn this is
/// an estimate).
pub fn count_entries<T: Borrow<MapData>>(map: &HashMap<T, u64, IndexValue>, capacity: u32) -> u64 {
    map.keys()
        .take(capacity as usize)
        .filter(Result::is_ok)
        .count() as u64
}
