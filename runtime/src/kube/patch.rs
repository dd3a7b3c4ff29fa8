//! PATCH bodies applied to an object as the API shows it: JSON patch
//! (RFC 6902) and JSON merge patch (RFC 7386) through the `json-patch`
//! crate; strategic merge patch and server-side apply's body written here
//! (no crate does Kubernetes' strategic merge): maps merge, `null` removes,
//! and the lists Kubernetes merges by a key (`patchMergeKey`) merge item by
//! item — containers, env and volumes by name, container ports by
//! containerPort, Service ports by port; other lists are replaced.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::status::Status;

/// Kubernetes' bound on a JSON patch's operations.
const MAX_OPERATIONS: usize = 10_000;

/// What kind of patch a body is, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// The kind a Content-Type names; 415 for any other.
    pub fn from_content_type(content_type: &str) -> Result<PatchKind, Status> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(Status::unsupported_media(format!(
                "the body of a PATCH is application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml, not `{other}`"
            ))),
        }
    }
}

/// `live` with `patch` applied (`live` is left as it was on an error).
pub fn apply(kind: PatchKind, live: &Value, patch: &Value) -> Result<Value, Status> {
    let mut object = live.clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| Status::bad_request(format!("the JSON patch does not parse: {e}")))?;
            if ops.0.len() > MAX_OPERATIONS {
                return Err(Status::too_large_patch(MAX_OPERATIONS));
            }
            json_patch::patch(&mut object, &ops.0)
                .map_err(|e| Status::invalid_patch(format!("the JSON patch cannot be applied: {e}")))?;
        }
        PatchKind::Merge => {
            object_body(patch)?;
            json_patch::merge(&mut object, patch);
        }
        PatchKind::Strategic | PatchKind::Apply => {
            object_body(patch)?;
            strategic(&mut object, patch, "")?;
        }
    }
    Ok(object)
}

fn object_body(patch: &Value) -> Result<(), Status> {
    match patch.is_object() {
        true => Ok(()),
        false => Err(Status::bad_request("the patch is not a JSON object")),
    }
}

/// The key a list named `field` is merged by, if Kubernetes merges it by
/// one; `items` tells container ports (containerPort) from Service ports.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => {
            Some("name")
        }
        "volumeMounts" => Some("mountPath"),
        "ports" if items.iter().any(|p| p.get("containerPort").is_some()) => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Merges `patch` into `target` as a strategic merge patch; `path` names
/// where, for errors.
fn strategic(target: &mut Value, patch: &Value, path: &str) -> Result<(), Status> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match patch.get("$patch") {
        None => {}
        Some(v) if v == "merge" => {}
        Some(v) if v == "replace" => {
            *target = without_directives(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some(other) => {
            return Err(Status::invalid_patch(format!(
                "{}: podnet does not take `$patch: {other}` on a map (only replace and merge)",
                if path.is_empty() { "<object>" } else { path }
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let gone: HashSet<String> =
                value.as_array().into_iter().flatten().map(Value::to_string).collect();
            if let Some(Value::Array(list)) = map.get_mut(field) {
                list.retain(|v| !gone.contains(&v.to_string()));
            }
            continue;
        }
        // Ordering hints (kubectl's 3-way patches send them): podnet keeps
        // the order the merge gives; `$retainKeys` is applied after the
        // merge, below.
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(directive) = key.strip_prefix('$') {
            return Err(Status::invalid_patch(format!(
                "{here}: podnet does not take the strategic merge directive `${directive}`"
            )));
        }
        match value {
            Value::Null => {
                map.remove(key);
            }
            Value::Object(_) => strategic(map.entry(key.clone()).or_insert(Value::Null), value, &here)?,
            Value::Array(items) => match merge_key(key, items) {
                Some(merge_key) => {
                    let live = map.entry(key.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    merge_list(live, items, merge_key, &here)?
                }
                None => {
                    map.insert(key.clone(), Value::Array(items.iter().map(without_directives).collect()));
                }
            },
            other => {
                map.insert(key.clone(), other.clone());
            }
        }
    }
    // `$retainKeys` (the patch strategy of a deployment's strategy): the
    // map keeps only the keys named.
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: HashSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        map.retain(|k, _| keep.contains(k.as_str()));
    }
    Ok(())
}

/// Merges the items of a keyed list: an item whose key is in the live
/// list is merged into it, `$patch: delete` removes it, a new one is
/// appended. Items are found through an index, so a hostile patch of many
/// items costs linear time, not quadratic.
fn merge_list(live: &mut Value, items: &[Value], key: &str, path: &str) -> Result<(), Status> {
    let current = match live.take() {
        Value::Array(list) => list,
        _ => Vec::new(),
    };
    let mut list: Vec<Option<Value>> = current.into_iter().map(Some).collect();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, item) in list.iter().enumerate() {
        if let Some(id) = item.as_ref().and_then(|v| v.get(key)) {
            index.entry(id.to_string()).or_insert(i);
        }
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(id) = item.get(key).filter(|v| !v.is_null()) else {
            return Err(Status::invalid_patch(format!(
                "{at}: the items of {path} are merged by `{key}`, and this one has none"
            )));
        };
        let id = id.to_string();
        let found = index.get(&id).copied().filter(|&n| list[n].is_some());
        match (item.get("$patch").and_then(Value::as_str), found) {
            (Some("delete"), Some(n)) => list[n] = None,
            (Some("delete"), None) => {}
            (Some("replace"), Some(n)) => list[n] = Some(without_directives(item)),
            (None | Some("merge"), Some(n)) => strategic(list[n].as_mut().expect("found above"), item, &at)?,
            (None | Some("merge" | "replace"), None) => {
                index.insert(id, list.len());
                list.push(Some(without_directives(item)));
            }
            (Some(other), _) => {
                return Err(Status::invalid_patch(format!(
                    "{at}: podnet does not take `$patch: {other}` in a list"
                )));
            }
        }
    }
    *live = Value::Array(list.into_iter().flatten().collect());
    Ok(())
}

/// A value without the `$` directives a strategic patch may carry in it.
fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Value {
        json!({
            "metadata": { "name": "web", "labels": { "app": "web" }, "annotations": { "a": "1" } },
            "spec": { "replicas": 1, "template": { "spec": { "containers": [
                { "name": "web", "image": "app:v1", "ports": [{ "containerPort": 80, "protocol": "TCP" }] }
            ] } } }
        })
    }

    #[test]
    fn a_strategic_patch_merges_containers_by_name_and_ports_by_number() {
        let patch = json!({
            "metadata": { "labels": { "tier": "front" }, "annotations": { "a": null } },
            "spec": { "template": { "spec": {
                "$setElementOrder/containers": [{ "name": "web" }],
                "containers": [{ "name": "web", "image": "app:v2", "ports": [{ "containerPort": 8080 }] }]
            } } }
        });
        let out = apply(PatchKind::Strategic, &live(), &patch).unwrap();
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1, "merged by name, not appended: {c}");
        assert_eq!(c[0]["image"], "app:v2");
        assert_eq!(
            c[0]["ports"],
            json!([{ "containerPort": 80, "protocol": "TCP" }, { "containerPort": 8080 }])
        );
        assert_eq!(out["metadata"]["labels"], json!({ "app": "web", "tier": "front" }));
        assert_eq!(out["metadata"]["annotations"], json!({}), "null removes");
        // A merge patch replaces the list whole.
        let merged = apply(PatchKind::Merge, &live(), &patch).unwrap();
        assert!(merged["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"].is_null());
    }

    #[test]
    fn delete_directives_remove_list_items_and_unknown_ones_are_refused() {
        let patch = json!({ "spec": { "template": { "spec": { "containers": [
            { "name": "web", "ports": [{ "containerPort": 80, "$patch": "delete" }] }
        ] } } } });
        let out = apply(PatchKind::Strategic, &live(), &patch).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["ports"], json!([]));
        let strategy = json!({ "spec": { "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1 } } } });
        let switch = json!({ "spec": { "strategy": { "$retainKeys": ["type"], "type": "Recreate" } } });
        let out = apply(PatchKind::Strategic, &strategy, &switch).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({ "type": "Recreate" }), "rollingUpdate cleared");
        let bad = json!({ "spec": { "$patch": "merge-sideways" } });
        let e = apply(PatchKind::Strategic, &live(), &json!({ "spec": { "$weird": 1 } })).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(apply(PatchKind::Strategic, &live(), &bad).unwrap_err().code, 422);
        let keyless = json!({ "spec": { "template": { "spec": { "containers": [{ "image": "x" }] } } } });
        let e = apply(PatchKind::Strategic, &live(), &keyless).unwrap_err();
        assert!(e.message.contains("merged by `name`"), "{}", e.message);
    }

    #[test]
    fn json_patches_apply_whole_or_not_at_all() {
        let ok = json!([{ "op": "replace", "path": "/spec/replicas", "value": 3 }]);
        assert_eq!(apply(PatchKind::Json, &live(), &ok).unwrap()["spec"]["replicas"], 3);
        let half = json!([
            { "op": "replace", "path": "/spec/replicas", "value": 3 },
            { "op": "remove", "path": "/spec/nothing" }
        ]);
        let e = apply(PatchKind::Json, &live(), &half).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("/spec/nothing"), "{}", e.message);
        assert_eq!(apply(PatchKind::Json, &live(), &json!({ "op": "x" })).unwrap_err().code, 400);
        assert_eq!(
            PatchKind::from_content_type("application/strategic-merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Strategic
        );
        assert_eq!(PatchKind::from_content_type("text/plain").unwrap_err().code, 415);
    }
}
