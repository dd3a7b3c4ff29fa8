//! networking.k8s.io/v1 Ingresses and IngressClasses and v1 Secrets in the
//! API's shape: rendered from podnet's objects (a Secret's data never: its
//! keys are listed with empty values) and decoded from what clients send.

use base64::Engine;
use serde_json::{Value, json};

use super::decode::{Ctx, annotations, head, labels};
use super::objects::{PROBLEM_ANNOTATION, annotate, metadata};
use super::status::Status;
use crate::model::ingress::{
    BackendPort, INGRESS_CLASS, INGRESS_CONTROLLER, Ingress, IngressBackend, IngressPath, IngressRule,
    IngressSpec, IngressTls, PathType,
};
use crate::model::secret::{SecretInfo, SecretSpec, SecretType};

/// kubectl apply's copy of the object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn backend(b: &IngressBackend) -> Value {
    let port = match &b.port {
        BackendPort::Number(n) => json!({ "number": n }),
        BackendPort::Name(name) => json!({ "name": name }),
    };
    json!({ "service": { "name": b.service, "port": port } })
}

/// An Ingress as the API shows it.
pub fn ingress(i: &Ingress, rv: u64) -> Value {
    let spec = &i.spec;
    let rules: Vec<Value> = spec
        .rules
        .iter()
        .map(|r| {
            let paths: Vec<Value> = r
                .paths
                .iter()
                .map(|p| json!({ "path": p.path, "pathType": p.path_type.as_str(), "backend": backend(&p.backend) }))
                .collect();
            let mut rule = json!({ "http": { "paths": paths } });
            if let Some(host) = &r.host {
                rule["host"] = json!(host);
            }
            rule
        })
        .collect();
    let mut out = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(&spec.name, Some(&spec.namespace), &i.uid, i.created_at, rv),
        "spec": { "rules": rules },
        "status": { "loadBalancer": {} },
    });
    if let Some(class) = &spec.class {
        out["spec"]["ingressClassName"] = json!(class);
    }
    if let Some(b) = &spec.default_backend {
        out["spec"]["defaultBackend"] = backend(b);
    }
    if !spec.tls.is_empty() {
        let tls: Vec<Value> =
            spec.tls.iter().map(|t| json!({ "hosts": t.hosts, "secretName": t.secret_name })).collect();
        out["spec"]["tls"] = json!(tls);
    }
    if !spec.labels.is_empty() {
        out["metadata"]["labels"] = json!(spec.labels);
    }
    annotate(&mut out["metadata"], &spec.annotations);
    if let Some(lb) = &i.load_balancer {
        let ingress: Vec<Value> = lb.ingress.iter().map(|ip| json!({ "ip": ip })).collect();
        out["status"]["loadBalancer"] = json!({ "ingress": ingress });
        if let Some(problem) = &lb.problem {
            out["metadata"]["annotations"][PROBLEM_ANNOTATION] = json!(problem);
        }
    }
    out
}

/// A Secret as the API shows it here: its keys, each with an empty value
/// (podnet never sends a Secret's bytes back out).
pub fn secret(s: &SecretInfo, rv: u64) -> Value {
    let data: serde_json::Map<String, Value> = s.keys.iter().map(|(k, _)| (k.clone(), json!(""))).collect();
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(&s.name, Some(&s.namespace), &s.uid, s.created_at, rv),
        "type": s.secret_type.as_str(),
        "data": data,
    });
    if !s.labels.is_empty() {
        out["metadata"]["labels"] = json!(s.labels);
    }
    annotate(&mut out["metadata"], &s.annotations);
    out
}

/// The one IngressClass, podnet, the default class.
pub fn ingress_class() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": INGRESS_CLASS,
            "uid": "podnet-ingress-class",
            "resourceVersion": "1",
            "creationTimestamp": "1970-01-01T00:00:00Z",
            "annotations": { "ingressclass.kubernetes.io/is-default-class": "true" },
        },
        "spec": { "controller": INGRESS_CONTROLLER },
    })
}

fn decode_backend(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<IngressBackend, Status> {
    let service = &value["service"];
    if value["resource"].is_object() {
        return Err(
            ctx.invalid(&format!("{field}.resource"), "podnet routes to Services only: use backend.service")
        );
    }
    let name = service["name"].as_str().unwrap_or("");
    let port = &service["port"];
    // Protobuf bodies carry a named port's number as 0: absent, as in JSON.
    let port = match (port["number"].as_u64().filter(|n| *n != 0), port["name"].as_str()) {
        (Some(n), None) if (1..=65535).contains(&n) => BackendPort::Number(n as u16),
        (None, Some(name)) => BackendPort::Name(name.to_string()),
        _ => {
            return Err(ctx.invalid(
                &format!("{field}.service.port"),
                "Required value: exactly one of port.number (1-65535) or port.name",
            ));
        }
    };
    Ok(IngressBackend { service: name.to_string(), port })
}

/// A networking.k8s.io/v1 Ingress from a client.
pub fn decode_ingress(body: &Value, namespace: &str) -> Result<IngressSpec, Status> {
    let name = head(body, "Ingress", "networking.k8s.io/v1", Some(namespace))?;
    let ctx = Ctx { kind: "Ingress", name };
    let spec = &body["spec"];
    let default_backend = match &spec["defaultBackend"] {
        Value::Null => None,
        v => Some(decode_backend(&ctx, v, "spec.defaultBackend")?),
    };
    let mut tls = Vec::new();
    for (i, t) in spec["tls"].as_array().into_iter().flatten().enumerate() {
        let hosts =
            t["hosts"].as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect();
        let secret_name = t["secretName"].as_str().unwrap_or("").to_string();
        if secret_name.is_empty() {
            return Err(ctx.invalid(
                &format!("spec.tls[{i}].secretName"),
                "Required value: podnet serves TLS from a Secret",
            ));
        }
        tls.push(IngressTls { hosts, secret_name });
    }
    let mut rules = Vec::new();
    for (i, r) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        let host = r["host"].as_str().filter(|h| !h.is_empty()).map(String::from);
        let mut paths = Vec::new();
        for (j, p) in r["http"]["paths"].as_array().into_iter().flatten().enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path_type: PathType = p["pathType"]
                .as_str()
                .ok_or_else(|| {
                    ctx.invalid(&format!("{field}.pathType"), "Required value: pathType must be specified")
                })?
                .parse()
                .map_err(|e: crate::model::ingress::IngressError| {
                    ctx.invalid(&format!("{field}.pathType"), e.to_string())
                })?;
            let path = p["path"].as_str().unwrap_or("/").to_string();
            paths.push(IngressPath {
                path,
                path_type,
                backend: decode_backend(&ctx, &p["backend"], &format!("{field}.backend"))?,
            });
        }
        rules.push(IngressRule { host, paths });
    }
    Ok(IngressSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        class: spec["ingressClassName"].as_str().map(String::from),
        default_backend,
        tls,
        rules,
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        annotations: annotations(&ctx, body)?,
    })
}

/// A v1 Secret from a client: `data` (base64) and `stringData` (text, which
/// wins on a key both give, as the API server merges them).
pub fn decode_secret(body: &Value, namespace: &str) -> Result<SecretSpec, Status> {
    let name = head(body, "Secret", "v1", Some(namespace))?;
    let ctx = Ctx { kind: "Secret", name };
    let mut data = std::collections::BTreeMap::new();
    for (k, v) in body["data"].as_object().into_iter().flatten() {
        let text =
            v.as_str().ok_or_else(|| ctx.invalid(&format!("data[{k}]"), "values are base64 strings"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| ctx.invalid(&format!("data[{k}]"), "Invalid value: not base64"))?;
        data.insert(k.clone(), bytes);
    }
    for (k, v) in body["stringData"].as_object().into_iter().flatten() {
        let text =
            v.as_str().ok_or_else(|| ctx.invalid(&format!("stringData[{k}]"), "values are strings"))?;
        data.insert(k.clone(), text.as_bytes().to_vec());
    }
    let mut annotations = annotations(&ctx, body)?;
    // kubectl apply keeps the whole object there, data included: podnet
    // keeps a Secret's bytes in its data only, never shown.
    annotations.remove(LAST_APPLIED);
    Ok(SecretSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        secret_type: SecretType::parse(body["type"].as_str().unwrap_or("")),
        data,
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingress_manifest_decodes_and_renders_back() {
        let body: Value = serde_yaml_ng::from_str(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\nspec:\n  ingressClassName: podnet\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n  tls: [{hosts: [shop.example], secretName: shop-tls}]\n  rules:\n  - host: shop.example\n    http:\n      paths:\n      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}\n",
        )
        .unwrap();
        let spec = decode_ingress(&body, "default").unwrap();
        assert_eq!(spec.rules[0].paths[0].backend.port, BackendPort::Name("http".into()));
        assert_eq!(spec.tls[0].secret_name, "shop-tls");
        let shown = ingress(&Ingress { uid: "u".into(), created_at: 0, spec, load_balancer: None }, 5);
        assert_eq!(shown["spec"]["rules"][0]["http"]["paths"][0]["pathType"], "Prefix");
        assert_eq!(shown["spec"]["defaultBackend"]["service"]["port"]["number"], 80);
        let bad: Value = serde_json::from_str(
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"x"},"spec":{"rules":[{"http":{"paths":[{"path":"/","backend":{"service":{"name":"a","port":{"number":80}}}}]}}]}}"#,
        )
        .unwrap();
        assert!(decode_ingress(&bad, "default").unwrap_err().message.contains("pathType"));
    }

    #[test]
    fn a_secret_takes_data_and_string_data_and_never_shows_bytes() {
        let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "Opaque", "data": {"a": "aGVsbG8="}, "stringData": {"b": "world"}});
        let spec = decode_secret(&body, "default").unwrap();
        assert_eq!(spec.data["a"], b"hello");
        assert_eq!(spec.data["b"], b"world");
        let info = crate::model::secret::Secret { uid: "u".into(), created_at: 0, spec }.info();
        let shown = secret(&info, 1).to_string();
        assert!(!shown.contains("aGVsbG8") && !shown.contains("world"), "{shown}");
    }
}
