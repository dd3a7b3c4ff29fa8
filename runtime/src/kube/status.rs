//! Errors as Kubernetes Status objects, so kubectl prints its usual
//! messages (`Error from server (NotFound): pods "x" not found`).

use serde_json::{Value, json};

/// A failed request: the HTTP code, the Status reason and message, and the
/// field causes of an Invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct Status {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes' StatusReason (NotFound, AlreadyExists, Invalid...).
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// The object the error is about: kind (or resource) and name.
    pub details: Option<(String, String)>,
    /// Invalid fields: path and what is wrong with it.
    pub causes: Vec<(String, String)>,
}

impl Status {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Status {
        Status { code, reason, message: message.into(), details: None, causes: Vec::new() }
    }

    /// 404 for an object: `pods "x" not found`.
    pub fn not_found(resource: &str, name: &str) -> Status {
        Status {
            details: Some((resource.to_string(), name.to_string())),
            ..Status::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
        }
    }

    /// 404 for a path the server does not serve.
    pub fn no_path() -> Status {
        Status::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 409: `pods "x" already exists`.
    pub fn already_exists(resource: &str, name: &str) -> Status {
        Status {
            details: Some((resource.to_string(), name.to_string())),
            ..Status::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
        }
    }

    /// 422: `Pod "x" is invalid: FIELD: MESSAGE`, with the field as a cause.
    pub fn invalid(kind: &str, name: &str, field: &str, message: impl Into<String>) -> Status {
        let message = message.into();
        Status {
            details: Some((kind.to_string(), name.to_string())),
            causes: vec![(field.to_string(), message.clone())],
            ..Status::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {field}: {message}"))
        }
    }

    /// 409: an update made against an older version of the object.
    pub fn conflict(resource: &str, name: &str) -> Status {
        Status {
            details: Some((resource.to_string(), name.to_string())),
            ..Status::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            )
        }
    }

    /// 403: what nobody may do (`namespaces "default" is forbidden: ...`).
    pub fn forbidden(resource: &str, name: &str, why: &str) -> Status {
        Status {
            details: Some((resource.to_string(), name.to_string())),
            ..Status::new(403, "Forbidden", format!("{resource} \"{name}\" is forbidden: {why}"))
        }
    }

    /// 422: a patch that cannot be applied to the object.
    pub fn invalid_patch(message: impl Into<String>) -> Status {
        Status::new(422, "Invalid", message)
    }

    /// 413: a JSON patch of too many operations.
    pub fn too_large_patch(limit: usize) -> Status {
        Status::new(
            413,
            "RequestEntityTooLarge",
            format!("the allowed maximum operations in a JSON patch is {limit}"),
        )
    }

    /// 400: a body that is not the object it should be.
    pub fn bad_request(message: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", message)
    }

    /// 401: no token or the wrong one.
    pub fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405: a verb the resource does not take.
    pub fn not_allowed(message: impl Into<String>) -> Status {
        Status::new(405, "MethodNotAllowed", message)
    }

    /// 406: a representation the server cannot give.
    pub fn not_acceptable(message: impl Into<String>) -> Status {
        Status::new(406, "NotAcceptable", message)
    }

    /// 413: a body past the limit.
    pub fn too_large(limit: usize) -> Status {
        Status::new(413, "RequestEntityTooLarge", format!("the request body is larger than {limit} bytes"))
    }

    /// 415: a body in a format the server does not read.
    pub fn unsupported_media(message: impl Into<String>) -> Status {
        Status::new(415, "UnsupportedMediaType", message)
    }

    /// 503: the agent cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(503, "ServiceUnavailable", message)
    }

    /// 504: the request took longer than the request timeout.
    pub fn timeout() -> Status {
        Status::new(504, "Timeout", "the request did not complete within the request timeout")
    }

    /// Refused (403), with the whole message.
    pub fn refused(message: impl Into<String>) -> Status {
        Status::new(403, "Forbidden", message)
    }

    /// Something that should have worked did not (500).
    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(500, "InternalError", message)
    }

    /// A refusal of the agent (rendered to text by the control plane) as the
    /// Status kubectl expects: not found, already exists, or invalid.
    pub fn from_agent(text: &str, kind: &str, resource: &str, name: &str) -> Status {
        if text.contains("shutting down") {
            Status::unavailable(text)
        } else if text.contains(" runs on node ") {
            // A pod's log asked of a node the pod is not on.
            Status::bad_request(text)
        } else if text.contains(&format!("/{name} not found"))
            || text.contains(&format!("node `{name}` not found"))
            || text.contains(&format!("namespace {name} not found"))
        {
            Status::not_found(resource, name)
        } else if text.contains(&format!("/{name} already exists"))
            || text.contains(&format!("namespace {name} already exists"))
        {
            Status::already_exists(resource, name)
        } else if let Some((field, message)) = named_field(text) {
            // The control plane's refusals of an update name the field.
            Status::invalid(kind, name, field, message)
        } else {
            Status::invalid(kind, name, field_of(text), text)
        }
    }

    /// The Status object.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((kind, name)) = &self.details {
            let mut details = json!({ "name": name, "kind": kind });
            if !self.causes.is_empty() {
                details["causes"] = self
                    .causes
                    .iter()
                    .map(|(field, message)| json!({ "reason": "FieldValueInvalid", "message": message, "field": field }))
                    .collect();
            }
            status["details"] = details;
        }
        status
    }
}

/// `FIELD: Invalid value: ...` or `FIELD: Forbidden: ...`: the field and
/// the rest.
fn named_field(text: &str) -> Option<(&str, &str)> {
    let (field, rest) = text.split_once(": ")?;
    let is_path = field.starts_with("spec") || field.starts_with("metadata");
    (is_path && !field.contains(' ') && (rest.starts_with("Invalid value") || rest.starts_with("Forbidden")))
        .then_some((field, rest))
}

/// The field a control-plane refusal is most likely about (its text names
/// the CLI flag, not the manifest field).
fn field_of(text: &str) -> &'static str {
    let has = |word: &str| text.contains(word);
    if has("command") {
        "spec.containers[0].command"
    } else if has("host port") || has("hostPort") {
        "spec.containers[0].ports"
    } else if has("node port") || has("--node-port") {
        "spec.ports[0].nodePort"
    } else if has("ClusterIP") || has("cluster-ip") {
        "spec.clusterIP"
    } else if has("port") {
        "spec.ports"
    } else if has("label") {
        "metadata.labels"
    } else if has("name") {
        "metadata.name"
    } else {
        "spec"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_refusals_become_the_status_kubectl_knows() {
        let s = Status::from_agent(
            "pod default/x not found: list pods with `podnet get pods -n default`",
            "Pod",
            "pods",
            "x",
        );
        assert_eq!((s.code, s.reason), (404, "NotFound"));
        let s = Status::from_agent(
            "deployment default/web already exists: scale it",
            "Deployment",
            "deployments.apps",
            "web",
        );
        assert_eq!(
            (s.code, s.reason, s.message.as_str()),
            (409, "AlreadyExists", "deployments.apps \"web\" already exists")
        );
        let s = Status::from_agent(
            "command `x` not found on the node: install it, or give its full path",
            "Pod",
            "pods",
            "x",
        );
        assert_eq!((s.code, s.reason), (422, "Invalid"));
        assert_eq!(s.to_json()["details"]["causes"][0]["field"], "spec.containers[0].command");
        assert_eq!(Status::from_agent("the agent is shutting down", "Pod", "pods", "x").code, 503);
    }

    #[test]
    fn not_found_reads_as_kubectl_prints_it() {
        let s = Status::not_found("pods", "x").to_json();
        assert_eq!(s["message"], "pods \"x\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["name"], "x");
    }
}
