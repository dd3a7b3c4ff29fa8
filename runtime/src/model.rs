//! The objects users manage — pods and deployments — in the shape both the
//! agent and the CLI use. The CLI renders them the Kubernetes way.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Labels: `app=web` and friends.
pub type Labels = BTreeMap<String, String>;

/// What happens when a pod's command exits (Kubernetes' restartPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    /// Restart after any exit.
    #[default]
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Always" => Ok(RestartPolicy::Always),
            "OnFailure" => Ok(RestartPolicy::OnFailure),
            "Never" => Ok(RestartPolicy::Never),
            _ => Err(format!("restart policy `{s}` is not one of Always, OnFailure, Never")),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What a user asks for when making a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    /// Pod name (an RFC 1123 label).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: Labels,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// The deployment that owns this pod, if any.
    pub owner: Option<String>,
}

/// Lifecycle phase (Kubernetes' PodPhase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not running yet.
    Pending,
    /// The command runs (or waits to be restarted).
    Running,
    /// Exited 0 and will not be restarted.
    Succeeded,
    /// Exited non-zero and will not be restarted.
    Failed,
}

/// What the agent observes about a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// Phase.
    pub phase: Phase,
    /// The pod's IP.
    pub pod_ip: Option<Ipv4Addr>,
    /// Whether the command is running now.
    pub ready: bool,
    /// How many times the command was restarted.
    pub restarts: u32,
    /// Why the pod is not running, kubectl style (CrashLoopBackOff, Completed, Error).
    pub reason: Option<String>,
    /// Exit code of the last run.
    pub last_exit_code: Option<i32>,
    /// Unix time the current run started.
    pub started_at: Option<u64>,
}

/// A pod as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// The node running it.
    pub node_name: String,
    /// Desired state.
    pub spec: PodSpec,
    /// Observed state.
    pub status: PodStatus,
}

/// What a user asks for when making a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// Name (its pods are NAME-<suffix>).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Desired pod count.
    pub replicas: u32,
    /// Labels of the deployment and its pods (always holds app=NAME).
    pub labels: Labels,
    /// The pods' command.
    pub command: Vec<String>,
}

/// A deployment as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: DeploymentSpec,
    /// Pods that exist.
    pub replicas: u32,
    /// Pods whose command runs.
    pub ready_replicas: u32,
}

/// The node as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Pod subnet.
    pub pod_cidr: String,
    /// Agent version.
    pub version: String,
    /// Unix time the agent started.
    pub started_at: u64,
}

/// Checks an object name is an RFC 1123 label, as Kubernetes requires of pod
/// and namespace names.
pub fn check_name(kind: &str, name: &str, max_len: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max_len
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name `{name}`: use at most {max_len} lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// Checks a label key and value (a simplified form of Kubernetes' rules).
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let part = |s: &str| {
        s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
    };
    let key_ok = !key.is_empty()
        && key.split_once('/').map_or(part(key), |(p, n)| !p.is_empty() && !n.is_empty() && part(n));
    if key_ok && part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label `{key}={value}`: keys and values are up to 63 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(check_name("pod", "web-1", 63).is_ok());
        for bad in ["", "Web", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_name("pod", bad, 63).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_label("app", "web").is_ok());
        assert!(check_label("app.kubernetes.io/name", "web").is_ok());
        assert!(check_label("", "x").is_err());
        assert!(check_label("a", "has space").is_err());
    }
}
