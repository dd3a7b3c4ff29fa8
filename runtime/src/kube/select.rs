//! Label selectors (`-l app=web,tier in (a,b),!canary`) and field
//! selectors (`metadata.name=x`, `spec.nodeName=pi1`, `status.phase!=Running`),
//! matched against objects in their API shape.

use serde_json::Value;

use super::status::Status;

/// Longest selector read: a client cannot make matching costly.
const MAX_SELECTOR: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, Op)>);

/// Splits at commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

impl LabelSelector {
    /// Parses `labelSelector`; a 400 names what is wrong.
    pub fn parse(text: &str) -> Result<LabelSelector, Status> {
        if text.len() > MAX_SELECTOR {
            return Err(Status::bad_request(format!(
                "the label selector is longer than {MAX_SELECTOR} bytes"
            )));
        }
        let bad = |part: &str| {
            Status::bad_request(format!(
                "unable to parse requirement: `{}`: use key=value, key!=value, key in (a,b), key notin (a,b), key or !key",
                part.trim()
            ))
        };
        let mut reqs = Vec::new();
        for part in split_top(text).into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let key_ok = |k: &str| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
            };
            let values = |list: &str| -> Result<Vec<String>, Status> {
                let inner = list
                    .trim()
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .ok_or_else(|| bad(part))?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
            };
            let req = if let Some(key) = part.strip_prefix('!') {
                (key.trim().to_string(), Op::NotExists)
            } else if let Some((k, v)) = part.split_once("!=") {
                (k.trim().to_string(), Op::NotIn(vec![v.trim().to_string()]))
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k.trim().to_string(), Op::In(vec![v.trim().to_string()]))
            } else if let Some((k, list)) = part.split_once(" notin ") {
                (k.trim().to_string(), Op::NotIn(values(list)?))
            } else if let Some((k, list)) = part.split_once(" in ") {
                (k.trim().to_string(), Op::In(values(list)?))
            } else {
                (part.to_string(), Op::Exists)
            };
            if !key_ok(&req.0) {
                return Err(bad(part));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `object`'s labels satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|(key, op)| {
            let value = labels[key.as_str()].as_str();
            match op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => value.is_none_or(|v| !set.iter().any(|s| s == v)),
            }
        })
    }
}

/// A parsed field selector: `field=value` / `field!=value`, all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(Vec<&'static str>, bool, String)>);

/// The fields a kind can be selected by, with their JSON paths.
fn field_path(kind: &str, field: &str) -> Option<Vec<&'static str>> {
    let path: &[&'static str] = match field {
        "metadata.name" => &["metadata", "name"],
        "metadata.namespace" => &["metadata", "namespace"],
        "spec.nodeName" if kind == "Pod" => &["spec", "nodeName"],
        "status.phase" if kind == "Pod" => &["status", "phase"],
        "status.podIP" if kind == "Pod" => &["status", "podIP"],
        "spec.restartPolicy" if kind == "Pod" => &["spec", "restartPolicy"],
        "spec.type" if kind == "Service" => &["spec", "type"],
        // What an Ingress controller lists TLS Secrets by.
        "type" if kind == "Secret" => &["type"],
        "involvedObject.name" if kind == "Event" => &["involvedObject", "name"],
        "involvedObject.namespace" if kind == "Event" => &["involvedObject", "namespace"],
        "involvedObject.kind" if kind == "Event" => &["involvedObject", "kind"],
        "involvedObject.uid" if kind == "Event" => &["involvedObject", "uid"],
        "involvedObject.apiVersion" if kind == "Event" => &["involvedObject", "apiVersion"],
        "involvedObject.fieldPath" if kind == "Event" => &["involvedObject", "fieldPath"],
        "involvedObject.resourceVersion" if kind == "Event" => &["involvedObject", "resourceVersion"],
        "reason" if kind == "Event" => &["reason"],
        "type" if kind == "Event" => &["type"],
        "source" if kind == "Event" => &["source", "component"],
        _ => return None,
    };
    Some(path.to_vec())
}

impl FieldSelector {
    /// Parses `fieldSelector` for objects of `kind`; a field the kind
    /// cannot be selected by is a 400, as Kubernetes says it.
    pub fn parse(text: &str, kind: &str) -> Result<FieldSelector, Status> {
        if text.len() > MAX_SELECTOR {
            return Err(Status::bad_request(format!(
                "the field selector is longer than {MAX_SELECTOR} bytes"
            )));
        }
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(Status::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let path = field_path(kind, field.trim())
                .ok_or_else(|| Status::bad_request(format!("field label not supported: {}", field.trim())))?;
            reqs.push((path, equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let found = path.iter().fold(object, |v, key| &v[*key]);
            let found = found.as_str().unwrap_or("");
            (found == want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({ "metadata": { "name": "web-1", "namespace": "default", "labels": labels }, "status": { "phase": "Running" } })
    }

    #[test]
    fn label_selectors_hold_every_requirement() {
        let web = obj(json!({ "app": "web", "tier": "front" }));
        let db = obj(json!({ "app": "db" }));
        let sel = |s: &str| LabelSelector::parse(s).unwrap();
        assert!(sel("app=web").matches(&web) && !sel("app=web").matches(&db));
        assert!(sel("app==web,tier").matches(&web) && !sel("app,tier").matches(&db));
        assert!(sel("app in (db, web)").matches(&web) && sel("app in (db,web)").matches(&db));
        assert!(!sel("app notin (web),!tier").matches(&web) && sel("app notin (web),!tier").matches(&db));
        assert!(sel("app!=db").matches(&web) && sel("").matches(&db));
        assert_eq!(LabelSelector::parse("app in web").unwrap_err().code, 400);
        assert_eq!(LabelSelector::parse("a b").unwrap_err().code, 400);
    }

    #[test]
    fn field_selectors_know_their_fields() {
        let web = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=web-1", "Pod").unwrap().matches(&web));
        assert!(!FieldSelector::parse("metadata.name=web-2", "Pod").unwrap().matches(&web));
        let tls = json!({ "metadata": { "name": "shop-tls" }, "type": "kubernetes.io/tls" });
        assert!(FieldSelector::parse("type=kubernetes.io/tls", "Secret").unwrap().matches(&tls));
        assert!(!FieldSelector::parse("type=Opaque", "Secret").unwrap().matches(&tls));
        assert!(
            FieldSelector::parse("status.phase!=Failed,metadata.namespace=default", "Pod")
                .unwrap()
                .matches(&web)
        );
        let e = FieldSelector::parse("status.phase=Running", "Service").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: status.phase"));
    }
}
