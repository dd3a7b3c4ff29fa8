//! Pods this node could not start: tried again after a delay that doubles
//! with each failure, and reported with the reason meanwhile (the kubelet
//! leaves such a pod Pending with a `FailedCreatePodSandBox` event).
//!
//! The first retry comes after 1 s, sooner than a crash loop's 10 s: a
//! sandbox usually fails for a passing reason (the address or namespace of a
//! pod being removed, a moment without descriptors or memory). The delay
//! doubles up to `pods.restart_backoff_max_ms` (5 min), so a failure that
//! lasts costs one attempt per 5 min instead of one per event-loop turn,
//! each of which built and tore down a namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use super::NodeError;
use crate::model::{Phase, PodStatus};

/// The first delay before a pod that failed to start is tried again.
pub(super) const INITIAL: Duration = Duration::from_secs(1);

/// The delay after `failures` failures in a row: [`INITIAL`] doubled each
/// time, at most `max`.
pub(super) fn delay(failures: u32, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    INITIAL.saturating_mul(1 << doublings).min(max)
}

/// The kubectl-style reason for a start error.
pub(super) fn reason(error: &NodeError) -> &'static str {
    match error {
        NodeError::Sandbox { .. } | NodeError::AttachPod { .. } | NodeError::Reopen(_) => {
            "CreatePodSandboxError"
        }
        _ => "StartError",
    }
}

struct Failure {
    failures: u32,
    retry_at: Instant,
    status: PodStatus,
}

/// The pods waiting to be tried again, by uid.
pub(super) struct StartFailures {
    pods: BTreeMap<String, Failure>,
    max: Duration,
}

impl StartFailures {
    /// None yet; delays grow to `max`.
    pub(super) fn new(max: Duration) -> StartFailures {
        StartFailures { pods: BTreeMap::new(), max: max.max(INITIAL) }
    }

    /// Whether pod `uid` may be tried now (it never failed, or its delay
    /// has passed).
    pub(super) fn due(&self, uid: &str, now: Instant) -> bool {
        self.pods.get(uid).is_none_or(|f| f.retry_at <= now)
    }

    /// Records that pod `uid` (address `ip`) failed to start at `now`, for
    /// `reason` (kubectl's word) and `message` (the error); returns the delay
    /// before the next attempt.
    pub(super) fn failed(
        &mut self,
        uid: &str,
        ip: IpAddr,
        reason: &str,
        message: String,
        now: Instant,
    ) -> Duration {
        let failures = self.pods.get(uid).map_or(0, |f| f.failures) + 1;
        let wait = delay(failures, self.max);
        let status = PodStatus {
            phase: Phase::Pending,
            pod_ip: Some(ip),
            ready: false,
            restarts: 0,
            reason: Some(reason.into()),
            last_exit_code: None,
            started_at: None,
            message: Some(message),
        };
        self.pods.insert(uid.to_string(), Failure { failures, retry_at: now + wait, status });
        wait
    }

    /// Pod `uid` started: its failures are forgotten.
    pub(super) fn started(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// Forgets the pods `wanted` says no to (deleted, or moved elsewhere).
    pub(super) fn retain(&mut self, wanted: impl Fn(&str) -> bool) {
        self.pods.retain(|uid, _| wanted(uid));
    }

    /// The status of each waiting pod, for the pod report.
    pub(super) fn statuses(&self) -> impl Iterator<Item = (String, PodStatus)> + '_ {
        self.pods.iter().map(|(uid, f)| (uid.clone(), f.status.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_a_second_to_the_max() {
        let max = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=11).map(|n| delay(n, max).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(u32::MAX, max), max);
    }

    #[test]
    fn a_failed_pod_waits_is_reported_and_is_forgotten_once_started() {
        let mut failures = StartFailures::new(Duration::from_secs(300));
        let now = Instant::now();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 5));
        assert!(failures.due("a", now));
        let wait = failures.failed("a", ip, "CreatePodSandboxError", "no".into(), now);
        assert_eq!(wait, INITIAL);
        assert!(!failures.due("a", now), "not again on the next event-loop turn");
        assert!(!failures.due("a", now + Duration::from_millis(999)));
        assert!(failures.due("a", now + INITIAL));
        assert_eq!(
            failures.failed("a", ip, "CreatePodSandboxError", "no".into(), now + INITIAL),
            INITIAL * 2
        );
        let report: Vec<_> = failures.statuses().collect();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].1.phase, Phase::Pending);
        assert_eq!(report[0].1.reason.as_deref(), Some("CreatePodSandboxError"));
        assert_eq!(report[0].1.message.as_deref(), Some("no"));
        failures.started("a");
        assert!(failures.due("a", now) && failures.statuses().next().is_none());
        failures.failed("b", ip, "StartError", "x".into(), now);
        failures.retain(|uid| uid != "b");
        assert!(failures.due("b", now), "a deleted pod's failures go with it");
    }

    #[test]
    fn sandbox_errors_and_command_errors_have_their_reasons() {
        let sandbox = NodeError::Sandbox {
            pod: "default/web".into(),
            source: crate::sys::SysError::Io(std::io::Error::other("File exists")),
        };
        assert_eq!(reason(&sandbox), "CreatePodSandboxError");
        let spawn = NodeError::Spawn {
            command: "nope".into(),
            pod: "default/web".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(reason(&spawn), "StartError");
    }
}
