//! v1 ConfigMaps in the API's shape: rendered whole (`data`, `binaryData`
//! in base64) and decoded from what clients send.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value, json};

use super::decode::{Ctx, annotations, head, labels};
use super::objects::{annotate, metadata};
use super::status::Status;
use crate::model::configmap::{ConfigMap, ConfigMapSpec};

/// A ConfigMap as the API shows it.
pub fn configmap(c: &ConfigMap, rv: u64) -> Value {
    let spec = &c.spec;
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(&spec.name, Some(&spec.namespace), &c.uid, c.created_at, rv),
    });
    if !spec.data.is_empty() {
        out["data"] = json!(spec.data);
    }
    if !spec.binary_data.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let binary: BTreeMap<&str, String> =
            spec.binary_data.iter().map(|(k, v)| (k.as_str(), b64.encode(v))).collect();
        out["binaryData"] = json!(binary);
    }
    if !spec.labels.is_empty() {
        out["metadata"]["labels"] = json!(spec.labels);
    }
    annotate(&mut out["metadata"], &spec.annotations);
    out
}

/// A ConfigMap from a client's object (kubectl create configmap, apply, a
/// PUT or a patched object).
pub fn decode(body: &Value, namespace: &str) -> Result<ConfigMapSpec, Status> {
    let name = head(body, "ConfigMap", "v1", Some(namespace))?;
    let ctx = Ctx { kind: "ConfigMap", name };
    let mut data = BTreeMap::new();
    for (k, v) in body["data"].as_object().into_iter().flatten() {
        let text = v.as_str().ok_or_else(|| ctx.invalid(&format!("data[{k}]"), "values are strings"))?;
        data.insert(k.clone(), text.to_string());
    }
    let mut binary_data = BTreeMap::new();
    for (k, v) in body["binaryData"].as_object().into_iter().flatten() {
        let field = format!("binaryData[{k}]");
        let text = v.as_str().ok_or_else(|| ctx.invalid(&field, "values are base64 strings"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| ctx.invalid(&field, "Invalid value: not base64"))?;
        binary_data.insert(k.clone(), bytes);
    }
    for field in ["data", "binaryData"] {
        if !matches!(body[field], Value::Null | Value::Object(_)) {
            return Err(ctx.invalid(field, "must be a map of keys to values"));
        }
    }
    Ok(ConfigMapSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        data,
        binary_data,
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        annotations: annotations(&ctx, body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configmap_decodes_and_renders_back() {
        let body: Value = serde_yaml_ng::from_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, labels: {tier: web}}\ndata: {mode: fast, app.properties: \"a=1\\nb=2\\n\"}\nbinaryData: {blob: AAEC}\n",
        )
        .unwrap();
        let spec = decode(&body, "default").unwrap();
        assert_eq!(spec.data["mode"], "fast");
        assert_eq!(spec.binary_data["blob"], vec![0, 1, 2]);
        let shown = configmap(&ConfigMap { uid: "u".into(), created_at: 0, spec }, 4);
        assert_eq!(shown["data"]["app.properties"], "a=1\nb=2\n");
        assert_eq!(shown["binaryData"]["blob"], "AAEC");
        assert_eq!(shown["metadata"]["labels"]["tier"], "web");
        assert_eq!(shown["metadata"]["resourceVersion"], "4");
        let bad: Value =
            serde_json::from_str(r#"{"metadata":{"name":"x"},"binaryData":{"k":"%%"}}"#).unwrap();
        assert_eq!(decode(&bad, "default").unwrap_err().code, 422);
    }
}
