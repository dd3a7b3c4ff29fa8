//! The disk-threshold image GC's policy, as the kubelet's: the disk use of
//! the store's file system (capacity minus what is free to unprivileged
//! users), and which images go first: the least recently used, never one a
//! pod runs, never one used within the minimum age.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

/// Images used (pulled, imported, prepared) more recently than this are
/// not removed (the kubelet's imageMinimumGCAge): a pod about to start
/// keeps the image it just pulled.
pub const MIN_AGE_S: u64 = 120;

/// The file system holding `path`: (capacity, bytes free to unprivileged users).
pub fn disk_usage(path: &Path) -> io::Result<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    let unit = stat.fragment_size() as u64;
    Ok((stat.blocks() as u64 * unit, stat.blocks_available() as u64 * unit))
}

/// Percent of the capacity in use, from (capacity, free); None when unknown.
pub fn percent(usage: io::Result<(u64, u64)>) -> Option<u64> {
    match usage {
        Ok((capacity, free)) if capacity > 0 => Some(capacity.saturating_sub(free) * 100 / capacity),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure the image store's disk use");
            None
        }
    }
}

/// The images GC may remove, first to go first: not in use, last used
/// (Unix seconds) before `now - min_age`, oldest first.
pub fn candidates(
    last_used: BTreeMap<String, u64>,
    in_use: &BTreeSet<String>,
    now: u64,
    min_age: u64,
) -> Vec<String> {
    let mut old: Vec<(u64, String)> = last_used
        .into_iter()
        .filter(|(name, used)| {
            !in_use.contains(name) && (min_age == 0 || *used < now.saturating_sub(min_age))
        })
        .map(|(name, used)| (used, name))
        .collect();
    old.sort();
    old.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_but_not_in_use_nor_recent_ones() {
        let last_used = BTreeMap::from([
            ("a".to_string(), 100),
            ("b".to_string(), 300),
            ("c".to_string(), 200),
            ("d".to_string(), 950),
            ("e".to_string(), 50),
        ]);
        let in_use = BTreeSet::from(["e".to_string()]);
        assert_eq!(candidates(last_used.clone(), &in_use, 1000, 120), ["a", "c", "b"]);
        assert_eq!(candidates(last_used, &in_use, 1000, 0), ["a", "c", "b", "d"]);
        assert_eq!(percent(Ok((200, 30))), Some(85));
        assert_eq!(percent(Ok((0, 0))), None);
        assert_eq!(percent(Err(io::Error::other("gone"))), None);
    }

    #[test]
    fn the_board_config_sets_the_thresholds_and_low_must_be_below_high() {
        use crate::config::NodeConfig;
        let config = NodeConfig::parse("[images]\ngc_high_percent = 90\ngc_low_percent = 70\n").unwrap();
        assert_eq!((config.images.gc_high_percent, config.images.gc_low_percent), (90, 70));
        assert_eq!(NodeConfig::parse("").unwrap().images.gc_high_percent, 85);
        let err = NodeConfig::parse("[images]\ngc_high_percent = 70\ngc_low_percent = 75\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: images.gc_low_percent 75 must be below images.gc_high_percent 70, which is at most 100"
        );
        assert!(NodeConfig::parse("[images]\ngc_high_percent = 101\n").is_err());
        assert!(NodeConfig::parse("[images]\nmax_layer_bytez = 1\n").is_err());
    }
}
