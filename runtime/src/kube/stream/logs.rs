//! `GET pods/NAME/log`: the pod's output, whole or its last `tailLines`
//! lines, at most `limitBytes`; with `follow=true`, a chunked body that
//! goes on with what the pod writes until its process ends or the client
//! goes (the node's follower polls the log file, `node::log_follow`).

use std::collections::BTreeMap;
use std::convert::Infallible;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::mpsc;

use super::{Body, refusal};
use crate::api::{Request, Response};
use crate::kube::agent::Agent;
use crate::kube::status::Status;

/// Most bytes of earlier output a followed log starts with (as `podnet
/// logs` reads at most).
const BACKLOG: u64 = 4 << 20;

/// What was asked of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Asked {
    follow: bool,
    tail: Option<usize>,
    limit: Option<usize>,
}

impl Asked {
    fn parse(query: &BTreeMap<String, String>) -> Result<Asked, Status> {
        let flag = |key: &str| query.get(key).is_some_and(|v| v == "true" || v == "1");
        for (key, why) in [
            ("previous", "--previous: it keeps no output of a container's earlier runs"),
            ("sinceSeconds", "--since: its logs carry no timestamps"),
            ("sinceTime", "--since-time: its logs carry no timestamps"),
            ("timestamps", "--timestamps: its logs carry no timestamps"),
        ] {
            if query.get(key).is_some_and(|v| v != "false") {
                return Err(Status::bad_request(format!(
                    "podnet does not serve {why}; run kubectl logs without it"
                )));
            }
        }
        let number = |key: &str| -> Result<Option<usize>, Status> {
            query
                .get(key)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| Status::bad_request(format!("{key} `{v}` is not a number")))
                })
                .transpose()
        };
        Ok(Asked { follow: flag("follow"), tail: number("tailLines")?, limit: number("limitBytes")? })
    }

    /// `bytes` cut to the asked tail (for the first bytes) and what the
    /// limit leaves (`sent` bytes went before).
    fn cut(&self, mut bytes: Vec<u8>, first: bool, sent: usize) -> Vec<u8> {
        if first && let Some(n) = self.tail {
            bytes = last_lines(&bytes, n).to_vec();
        }
        if let Some(limit) = self.limit {
            bytes.truncate(limit.saturating_sub(sent));
        }
        bytes
    }
}

/// Answers `GET pods/NAME/log` with a `text/plain` body.
pub async fn answer(
    agent: &Agent,
    namespace: &str,
    name: &str,
    query: &BTreeMap<String, String>,
) -> Result<Body, Status> {
    let asked = Asked::parse(query)?;
    let (namespace, name_owned) = (namespace.to_string(), name.to_string());
    if !asked.follow {
        let request = Request::Logs { namespace, name: name_owned };
        let bytes = match agent.call(request).await.map_err(|e| refusal(e, name))? {
            Response::Logs(bytes) => bytes,
            _ => return Err(Status::unavailable("the agent answered with something else than asked for")),
        };
        return Ok(Full::new(Bytes::from(asked.cut(bytes, true, 0))).boxed_unsync());
    }
    let request = Request::FollowLogs { namespace, name: name_owned, backlog: BACKLOG };
    let items = agent.stream(request).await.map_err(|e| refusal(e, name))?;
    Ok(followed(items, asked))
}

/// The body of a followed log: each item as it comes, until the stream or
/// the limit ends; dropped with the connection, which ends the follower.
fn followed(items: mpsc::Receiver<Response>, asked: Asked) -> Body {
    let state = (items, true, 0usize);
    let chunks = futures::stream::unfold(state, move |(mut items, mut first, sent)| async move {
        if asked.limit.is_some_and(|l| sent >= l) {
            return None;
        }
        loop {
            let Response::Logs(bytes) = items.recv().await? else { return None };
            let bytes = asked.cut(bytes, first, sent);
            // Nothing to send (no backlog): wait for output.
            if bytes.is_empty() {
                first = false;
                continue;
            }
            let n = bytes.len();
            return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))), (items, false, sent + n)));
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// The last `n` lines of `text` (a last line without its newline counts).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start =
        body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map_or(0, |(i, _)| i + 1);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_keeps_the_last_ones() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn what_podnet_cannot_serve_is_refused_by_name() {
        let e = Asked::parse(&query(&[("previous", "true")])).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("--previous"), "{}", e.message);
        assert!(Asked::parse(&query(&[("previous", "false"), ("follow", "true")])).unwrap().follow);
        assert_eq!(Asked::parse(&query(&[("tailLines", "x")])).unwrap_err().code, 400);
    }

    #[tokio::test]
    async fn a_followed_log_is_tailed_first_then_streamed_up_to_the_limit() {
        let (tx, rx) = mpsc::channel(4);
        let asked = Asked { follow: true, tail: Some(1), limit: Some(12) };
        let mut body = followed(rx, asked);
        tx.send(Response::Logs(b"one\ntwo\n".to_vec())).await.unwrap();
        tx.send(Response::Logs(b"three\n".to_vec())).await.unwrap();
        tx.send(Response::Logs(b"four\nfive\n".to_vec())).await.unwrap();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"two\nthree\nfo", "the tail of the backlog, then new output, cut at the limit");
    }

    #[tokio::test]
    async fn a_followed_log_ends_with_its_stream() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = followed(rx, Asked { follow: true, tail: None, limit: None });
        tx.send(Response::Logs(b"a\n".to_vec())).await.unwrap();
        drop(tx);
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "a\n");
        assert!(body.frame().await.is_none());
    }
}
