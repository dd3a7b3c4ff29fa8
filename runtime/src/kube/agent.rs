//! The API's way into the agent: the same request channel the control
//! socket uses. The API never touches control-plane state itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::api::server::{Answer, Call};
use crate::api::{Request, Response};

/// Sends requests to the agent's event loop and awaits the answers.
#[derive(Clone)]
pub struct Agent {
    calls: mpsc::Sender<Call>,
    timeout: Duration,
    /// The last lists of Events (they are made from the agent's answers,
    /// and watched from): shared by every clone.
    events: Arc<super::event_history::EventHistory>,
}

/// Why the agent did not answer with a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefusal {
    /// The agent refused the request, in its words.
    #[error("{0}")]
    Refused(String),
    /// The agent is stopping, or did not answer in time.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl Agent {
    /// An agent reached through `calls`; answers past `timeout` are given up.
    pub fn new(calls: mpsc::Sender<Call>, timeout: Duration) -> Agent {
        Agent { calls, timeout, events: Arc::default() }
    }

    /// The last lists of Events made through this agent.
    pub fn event_history(&self) -> &super::event_history::EventHistory {
        &self.events
    }

    /// Sends `request` and waits for its one answer.
    pub async fn call(&self, request: Request) -> Result<Response, AgentRefusal> {
        match self.ask(request).await? {
            Answer::Once(response) => Ok(*response),
            Answer::Stream(_) | Answer::Session { .. } => {
                Err(AgentRefusal::Unavailable("the agent answered with a stream"))
            }
        }
    }

    /// Sends `request`, whose answer is a stream (a log followed); the
    /// stream ends when the agent ends it, and dropping it tells the agent.
    pub async fn stream(&self, request: Request) -> Result<mpsc::Receiver<Response>, AgentRefusal> {
        match self.ask(request).await? {
            Answer::Stream(items) => Ok(items),
            Answer::Session { .. } => Err(AgentRefusal::Unavailable("the agent answered with a session")),
            Answer::Once(_) => Err(AgentRefusal::Unavailable("the agent answered with one response")),
        }
    }

    /// Sends `request` and waits for its answer, one response or a stream.
    pub async fn ask(&self, request: Request) -> Result<Answer, AgentRefusal> {
        let (tx, rx) = oneshot::channel();
        let ask = async {
            self.calls
                .send((request, tx))
                .await
                .map_err(|_| AgentRefusal::Unavailable("the agent is shutting down"))?;
            rx.await.map_err(|_| AgentRefusal::Unavailable("the agent is shutting down"))
        };
        match tokio::time::timeout(self.timeout, ask).await {
            Err(_) => Err(AgentRefusal::Unavailable("the agent did not answer within the request timeout")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Err(text))) => Err(AgentRefusal::Refused(text)),
            Ok(Ok(Ok(answer))) => Ok(answer),
        }
    }
}
