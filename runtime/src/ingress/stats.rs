//! What the ingress counts: requests per rule and status class, requests no
//! rule matched, failed backend connects and failed TLS handshakes; shown
//! by `podnet node stats` and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;

/// Status classes counted: 1xx to 5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The ingress's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per rule (`namespace/ingress host/path`), per status class. Bounded
    /// by the rules there are: a rule's counters go when it does ([`Stats::retain`]).
    rules: Mutex<BTreeMap<Arc<str>, [u64; 5]>>,
    unmatched: AtomicU64,
    upstream_failed: AtomicU64,
    tls_failed: AtomicU64,
}

impl Stats {
    /// Counts one answered request; `rule` None: no rule matched.
    pub fn count(&self, rule: Option<&Arc<str>>, status: StatusCode) {
        let Some(rule) = rule else {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.rules.lock().expect("stats lock").entry(rule.clone()).or_default()[class] += 1;
    }

    /// Counts a backend connect or exchange that failed.
    pub fn upstream_failed(&self) {
        self.upstream_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake that failed.
    pub fn tls_failed(&self) {
        self.tls_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps only the counters of rules `keep` says exist.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.rules.lock().expect("stats lock").retain(|rule, _| keep(rule));
    }

    /// Every non-zero counter, named: `requests{rule,class}`, `no_rule`,
    /// `upstream_errors`, `tls_handshakes_failed`.
    pub fn report(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (rule, counts) in self.rules.lock().expect("stats lock").iter() {
            for (class, n) in CLASSES.iter().zip(counts) {
                if *n > 0 {
                    out.push((format!("{rule} {class}"), *n));
                }
            }
        }
        for (name, counter) in [
            ("no_rule", &self.unmatched),
            ("upstream_errors", &self.upstream_failed),
            ("tls_handshakes_failed", &self.tls_failed),
        ] {
            out.push((name.to_string(), counter.load(Ordering::Relaxed)));
        }
        out
    }
}
