//! The CLI's errors: each layer's error as it came, and the CLI's own
//! refusals. `main` renders one, once, as `error: MESSAGE`.

use std::fmt::Display;

use runtime::api::ClientError;
use runtime::cluster::ClusterError;
use runtime::config::ConfigError;
use runtime::model::ModelError;
use runtime::sys::SysError;

/// Why a podnet command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The board config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client config, or the cluster server a `--kubeconfig` points at.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The local agent, or its answer.
    #[error(transparent)]
    Agent(#[from] ClientError),
    /// `podnet node up`: why the agent could not start or stopped.
    #[error(transparent)]
    NodeUp(#[from] runtime::agent::AgentError),
    /// An argument the model refuses.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A `create ingress --rule` that does not parse.
    #[error(transparent)]
    Rule(#[from] crate::ingress::RuleArgError),
    /// A namespace the demo needs.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// JSON output.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// YAML output.
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A capture file.
    #[error(transparent)]
    Pcap(#[from] pcap_file::PcapError),
    /// Writing output, or another local I/O step.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A step that failed, with what it was doing.
    #[error("{what}: {source}")]
    Step {
        /// The step, in words (`cannot enter pod default/web`).
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The agent answered with another kind of response.
    #[error("the agent sent an unexpected answer: use the podnet binary that matches the agent")]
    Unexpected,
    /// A refusal of the CLI's own, or an error the agent already put into words.
    #[error("{0}")]
    Message(String),
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Message(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> CliError {
        CliError::Message(message.to_string())
    }
}

/// Wraps an error with the step that failed: `.map_err(step("cannot start the agent"))`.
pub(crate) fn step<E: std::error::Error + Send + Sync + 'static>(
    what: impl Display,
) -> impl FnOnce(E) -> CliError {
    let what = what.to_string();
    move |source| CliError::Step { what, source: Box::new(source) }
}
