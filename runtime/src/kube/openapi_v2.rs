//! `/openapi/v2`, what kubectl 1.27 and 1.28 read for `kubectl explain`:
//! the same schemas as the v3 documents (`schemas.rs`), every group's
//! kinds marked with `x-kubernetes-group-version-kind`, as gnostic's
//! OpenAPI v2 `Document` in protobuf — client-go asks for it only in
//! protobuf. Hand-written: a few message types of gnostic's
//! `openapiv2/OpenAPIv2.proto`, written, never read, are not worth a
//! protobuf code generator in the build.

use serde_json::Value;

use super::discovery::NETWORKING_GROUP;

/// A field's tag: number and wire type 2 (length-delimited).
fn tag(out: &mut Vec<u8>, number: u32) {
    varint(out, u64::from(number << 3 | 2));
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Field `number` holding `bytes` (a string or an embedded message).
fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    tag(out, number);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `NamedSchema` / `NamedAny`-shaped pair: name (1) and message (2).
fn named(name: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, name.as_bytes());
    field(&mut out, 2, message);
    out
}

/// One v3 schema object as gnostic's v2 `Schema`. A `$ref` (alone or in
/// `allOf`, as v3 wraps it to keep a description) points to
/// `#/definitions/`; `x-` keys become vendor extensions, their value
/// given as YAML (JSON is YAML).
fn schema(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let reference = value["$ref"].as_str().or_else(|| value["allOf"][0]["$ref"].as_str());
    if let Some(r) = reference {
        let name = r.rsplit('/').next().unwrap_or(r);
        field(&mut out, 1, format!("#/definitions/{name}").as_bytes());
    }
    if let Some(format) = value["format"].as_str() {
        field(&mut out, 2, format.as_bytes());
    }
    if let Some(description) = value["description"].as_str() {
        field(&mut out, 4, description.as_bytes());
    }
    if value["additionalProperties"].is_object() {
        let mut item = Vec::new();
        field(&mut item, 1, &schema(&value["additionalProperties"]));
        field(&mut out, 21, &item);
    }
    if let Some(ty) = value["type"].as_str() {
        let mut item = Vec::new();
        field(&mut item, 1, ty.as_bytes());
        field(&mut out, 22, &item);
    }
    if value["items"].is_object() {
        let mut item = Vec::new();
        field(&mut item, 1, &schema(&value["items"]));
        field(&mut out, 23, &item);
    }
    if let Some(properties) = value["properties"].as_object() {
        let mut list = Vec::new();
        for (name, property) in properties {
            field(&mut list, 1, &named(name, &schema(property)));
        }
        field(&mut out, 25, &list);
    }
    for (key, extension) in value.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("x-")) {
        let mut any = Vec::new();
        field(&mut any, 2, extension.to_string().as_bytes());
        field(&mut out, 31, &named(key, &any));
    }
    out
}

/// The document: swagger 2.0, its info, and every schema.
pub fn document() -> Vec<u8> {
    let mut info = Vec::new();
    field(&mut info, 1, b"Kubernetes (podnet)");
    field(&mut info, 2, b"v1.32.0");
    // Every group's kinds marked: v3 marks a kind in its group's document.
    let mut all = super::schemas::components("");
    for group in ["apps", NETWORKING_GROUP] {
        for (name, value) in super::schemas::components(group).as_object().into_iter().flatten() {
            if let Some(gvk) = value.get("x-kubernetes-group-version-kind") {
                all[name]["x-kubernetes-group-version-kind"] = gvk.clone();
            }
        }
    }
    let mut definitions = Vec::new();
    for (name, value) in all.as_object().into_iter().flatten() {
        field(&mut definitions, 1, &named(name, &schema(value)));
    }
    let mut out = Vec::new();
    field(&mut out, 1, b"2.0");
    field(&mut out, 2, &info);
    field(&mut out, 9, &definitions);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_past_a_byte_are_varints_and_refs_point_to_definitions() {
        let mut out = Vec::new();
        field(&mut out, 4, &[b'x'; 300]);
        assert_eq!(&out[..3], &[0x22, 0xac, 0x02], "field 4, length 300");
        let s = schema(
            &json!({ "allOf": [{ "$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec" }], "description": "d" }),
        );
        let r = b"#/definitions/io.k8s.api.core.v1.PodSpec";
        assert_eq!(&s[..2], &[0x0a, r.len() as u8]);
        assert_eq!(&s[2..2 + r.len()], r);
        let doc = document();
        let text = String::from_utf8_lossy(&doc);
        for kind in ["\"kind\":\"Pod\"", "\"kind\":\"Deployment\"", "\"kind\":\"NetworkPolicy\""] {
            assert!(text.contains(kind), "{kind} marked");
        }
    }
}
