//! Arbitrary text as a board config: `NodeConfig::parse` must return a
//! config or an error message, never panic, and an accepted config must
//! pass its own checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = NodeConfig::parse(text) {
        config.check().expect("a parsed config passes check");
    }
});
