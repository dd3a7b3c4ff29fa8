//! `podnet create ingress|secret`, `get ingress|secrets|ingressclass` and
//! `describe ingress`, with kubectl's flags, syntax and columns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runtime::api::{Request, Response};
use runtime::model::ingress::{
    INGRESS_CLASS, INGRESS_CONTROLLER, Ingress, IngressBackend, IngressPath, IngressRule, IngressSpec,
    IngressTls, PathType,
};
use runtime::model::secret::{SecretInfo, SecretSpec, SecretType, TLS_CERT, TLS_KEY};
use serde_json::Value;

use crate::error::CliError;
use crate::table::{age, render};
use crate::{call, unexpected};

/// The resourceVersion the CLI shows (the control socket has none).
const NO_VERSION: u64 = 0;

/// One `--rule`: `host/path=service:port[,tls[=secret]]`, kubectl's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleArg {
    host: Option<String>,
    path: String,
    path_type: PathType,
    backend: IngressBackend,
    tls: Option<String>,
}

/// A `--rule` that does not parse: the rule and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("--rule `{rule}`: {why} (e.g. \"shop.example/api*=api:80,tls=shop-tls\")")]
pub struct RuleArgError {
    rule: String,
    why: String,
}

impl std::str::FromStr for RuleArg {
    type Err = RuleArgError;
    fn from_str(text: &str) -> Result<Self, RuleArgError> {
        let bad = |why: &str| RuleArgError { rule: text.to_string(), why: why.to_string() };
        let (route, rest) = text.split_once('=').ok_or_else(|| bad("needs HOST/PATH=SERVICE:PORT"))?;
        let (backend, options) = match rest.split_once(',') {
            Some((b, o)) => (b, Some(o)),
            None => (rest, None),
        };
        let tls = match options {
            None => None,
            Some(o) => match o.strip_prefix("tls=") {
                Some(secret) if !secret.is_empty() => Some(secret.to_string()),
                _ if o == "tls" => return Err(bad("podnet serves TLS from a Secret: write tls=SECRET")),
                _ => return Err(bad("the only option after `,` is tls=SECRET")),
            },
        };
        let (host, path) = match route.find('/') {
            Some(i) => (&route[..i], &route[i..]),
            None => return Err(bad("the path must start with `/`")),
        };
        let (path, path_type) = match path.strip_suffix('*') {
            Some(prefix) => (if prefix.is_empty() { "/" } else { prefix }, PathType::Prefix),
            None => (path, PathType::Exact),
        };
        Ok(RuleArg {
            host: (!host.is_empty()).then(|| host.to_string()),
            path: path.to_string(),
            path_type,
            backend: backend
                .parse()
                .map_err(|e: runtime::model::ingress::IngressError| bad(&e.to_string()))?,
            tls,
        })
    }
}

/// The Ingress `create ingress` asks for: rules of one host merge, TLS
/// hosts group by Secret, as kubectl makes them.
pub(crate) fn ingress_spec(
    name: String,
    namespace: String,
    class: Option<String>,
    rules: Vec<RuleArg>,
    default_backend: Option<IngressBackend>,
    annotations: &[String],
) -> Result<IngressSpec, CliError> {
    let mut spec = IngressSpec {
        name,
        namespace,
        class,
        default_backend,
        tls: Vec::new(),
        rules: Vec::new(),
        labels: Default::default(),
        annotations: BTreeMap::new(),
    };
    for a in annotations {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("--annotation `{a}` is not KEY=VALUE"))?;
        spec.annotations.insert(k.to_string(), v.to_string());
    }
    for rule in rules {
        let path = IngressPath { path: rule.path, path_type: rule.path_type, backend: rule.backend };
        match spec.rules.iter_mut().find(|r| r.host == rule.host) {
            Some(r) => r.paths.push(path),
            None => spec.rules.push(IngressRule { host: rule.host.clone(), paths: vec![path] }),
        }
        if let Some(secret) = rule.tls {
            let host = rule.host.unwrap_or_default();
            match spec.tls.iter_mut().find(|t| t.secret_name == secret) {
                Some(t) if host.is_empty() || t.hosts.contains(&host) => {}
                Some(t) => t.hosts.push(host),
                None => spec.tls.push(IngressTls {
                    hosts: if host.is_empty() { vec![] } else { vec![host] },
                    secret_name: secret,
                }),
            }
        }
    }
    Ok(spec)
}

/// `create secret tls`: the PEM files, checked by the agent.
pub(crate) fn tls_secret(
    name: String,
    namespace: String,
    cert: &Path,
    key: &Path,
) -> Result<SecretSpec, CliError> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path)
            .map_err(|e| CliError::Message(format!("{flag} {}: cannot read it: {e}", path.display())))
    };
    let data = BTreeMap::from([
        (TLS_CERT.to_string(), read(cert, "--cert")?),
        (TLS_KEY.to_string(), read(key, "--key")?),
    ]);
    Ok(SecretSpec {
        name,
        namespace,
        secret_type: SecretType::Tls,
        data,
        labels: Default::default(),
        annotations: BTreeMap::new(),
    })
}

/// `create secret generic`: `--from-literal KEY=VALUE` and `--from-file [KEY=]PATH`.
pub(crate) fn generic_secret(
    name: String,
    namespace: String,
    literals: &[String],
    files: &[PathBuf],
) -> Result<SecretSpec, CliError> {
    let mut data = BTreeMap::new();
    for l in literals {
        let (k, v) = l.split_once('=').ok_or_else(|| format!("--from-literal `{l}` is not KEY=VALUE"))?;
        data.insert(k.to_string(), v.as_bytes().to_vec());
    }
    for f in files {
        let text = f.to_string_lossy();
        let (key, path) = match text.split_once('=') {
            Some((k, p)) => (k.to_string(), PathBuf::from(p)),
            None => (f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), f.clone()),
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| CliError::Message(format!("--from-file {}: cannot read it: {e}", path.display())))?;
        data.insert(key, bytes);
    }
    Ok(SecretSpec {
        name,
        namespace,
        secret_type: SecretType::Opaque,
        data,
        labels: Default::default(),
        annotations: BTreeMap::new(),
    })
}

/// `get ingress`: NAME CLASS HOSTS ADDRESS PORTS AGE.
pub(crate) fn ingress_table(list: &[Ingress], ports: &[u16], all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let hosts = i.spec.hosts();
            let hosts = if hosts.is_empty() { "*".to_string() } else { hosts.join(",") };
            let address = match &i.load_balancer {
                // The nodes serving it; why none does only when none does
                // (`describe` shows a node's problem beside the others).
                Some(lb) => match (&lb.problem, lb.ingress.is_empty()) {
                    (Some(problem), true) => format!("<pending: {problem}>"),
                    (None, true) => String::new(),
                    (_, false) => lb.ingress.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(","),
                },
                None => String::new(),
            };
            // kubectl: 80, plus 443 when the Ingress has TLS.
            let mut shown: Vec<String> = ports.first().map(|p| p.to_string()).into_iter().collect();
            if !i.spec.tls.is_empty()
                && let Some(p) = ports.get(1)
            {
                shown.push(p.to_string());
            }
            let mut row = vec![
                i.spec.name.clone(),
                i.spec.class.clone().unwrap_or_else(|| "<none>".into()),
                hosts,
                address,
                shown.join(", "),
                age(i.created_at),
            ];
            if all_namespaces {
                row.insert(0, i.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get secrets`: NAME TYPE DATA AGE (never the bytes).
pub(crate) fn secret_table(list: &[SecretInfo], all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "TYPE", "DATA", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let mut row = vec![
                s.name.clone(),
                s.secret_type.as_str().to_string(),
                s.keys.len().to_string(),
                age(s.created_at),
            ];
            if all_namespaces {
                row.insert(0, s.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get ingressclass`: the one class.
pub(crate) fn class_table() -> String {
    render(
        &["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
        &[vec![
            INGRESS_CLASS.to_string(),
            INGRESS_CONTROLLER.to_string(),
            "<none>".to_string(),
            "<unknown>".to_string(),
        ]],
    )
}

/// Ingresses (one by name), as JSON objects and a table.
pub(crate) async fn get_ingresses(
    socket: &Path,
    namespace: Option<String>,
    name: Option<&str>,
    shown_namespace: &str,
    all_namespaces: bool,
) -> Result<(Vec<Value>, String), CliError> {
    let Response::Ingresses { mut items, ports } = call(socket, Request::GetIngresses { namespace }).await?
    else {
        return unexpected();
    };
    crate::keep_named(&mut items, name, |i| &i.spec.name, "ingress", shown_namespace)?;
    let objects = items.iter().map(|i| runtime::kube::ingresses::ingress(i, NO_VERSION)).collect();
    Ok((objects, ingress_table(&items, &ports, all_namespaces)))
}

/// Secrets (one by name), as JSON objects without data bytes and a table.
pub(crate) async fn get_secrets(
    socket: &Path,
    namespace: Option<String>,
    name: Option<&str>,
    shown_namespace: &str,
    all_namespaces: bool,
) -> Result<(Vec<Value>, String), CliError> {
    let Response::Secrets(mut items) = call(socket, Request::GetSecrets { namespace }).await? else {
        return unexpected();
    };
    crate::keep_named(&mut items, name, |s| &s.name, "secret", shown_namespace)?;
    let objects = items.iter().map(|s| runtime::kube::ingresses::secret(s, NO_VERSION)).collect();
    Ok((objects, secret_table(&items, all_namespaces)))
}

/// `describe ingress NAME`: its rules, backends and TLS, as kubectl shows them.
pub(crate) async fn describe(socket: &Path, namespace: &str, name: &str) -> Result<ExitCode, CliError> {
    let Response::Ingresses { items, .. } =
        call(socket, Request::GetIngresses { namespace: Some(namespace.to_string()) }).await?
    else {
        return unexpected();
    };
    let Some(i) = items.into_iter().find(|i| i.spec.name == name) else {
        return Err(format!("ingress {namespace}/{name} not found").into());
    };
    let spec = &i.spec;
    let address = i
        .load_balancer
        .as_ref()
        .map(|lb| {
            let served = lb.ingress.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(",");
            match (&lb.problem, served.is_empty()) {
                (Some(p), true) => format!("<pending: {p}>"),
                (Some(p), false) => format!("{served} (not served: {p})"),
                (None, _) => served,
            }
        })
        .unwrap_or_default();
    let mut out = format!(
        "Name:             {}\nLabels:           {}\nNamespace:        {}\nAddress:          {}\nIngress Class:    {}\nDefault backend:  {}\n",
        spec.name,
        if spec.labels.is_empty() {
            "<none>".into()
        } else {
            spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        },
        spec.namespace,
        address,
        spec.class.as_deref().unwrap_or("<none>"),
        spec.default_backend.as_ref().map_or("<default>".to_string(), ToString::to_string),
    );
    if !spec.tls.is_empty() {
        out += "TLS:\n";
        for t in &spec.tls {
            out += &format!("  {} terminates {}\n", t.secret_name, t.hosts.join(","));
        }
    }
    out += "Rules:\n  Host        Path  Backends\n  ----        ----  --------\n";
    for r in &spec.rules {
        out += &format!("  {}\n", r.host.as_deref().unwrap_or("*"));
        for p in &r.paths {
            out += &format!("              {} ({})  {}\n", p.path, p.path_type.as_str(), p.backend);
        }
    }
    let annotations: Vec<String> = spec.annotations.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    out += &format!(
        "Annotations:      {}\n",
        if annotations.is_empty() { "<none>".into() } else { annotations.join("\n                  ") }
    );
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_take_kubectls_syntax() {
        let r: RuleArg = "shop.example/api*=api:80,tls=shop-tls".parse().unwrap();
        assert_eq!(r.host.as_deref(), Some("shop.example"));
        assert_eq!((r.path.as_str(), r.path_type), ("/api", PathType::Prefix));
        assert_eq!(r.tls.as_deref(), Some("shop-tls"));
        let r: RuleArg = "/exact=web:http".parse().unwrap();
        assert_eq!((r.host, r.path.as_str(), r.path_type), (None, "/exact", PathType::Exact));
        let r: RuleArg = "shop.example/*=web:80".parse().unwrap();
        assert_eq!((r.path.as_str(), r.path_type), ("/", PathType::Prefix));
        for bad in ["shop.example=web:80", "shop.example/=web", "a/b=web:80,tls", "a/b=web:80,foo"] {
            assert!(bad.parse::<RuleArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_hosts_rules_merge_and_tls_hosts_group_by_secret() {
        let rules = ["shop.example/api*=api:80,tls=t", "shop.example/*=web:80,tls=t", "/x=web:80"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let spec = ingress_spec("a".into(), "default".into(), None, rules, None, &[]).unwrap();
        assert_eq!(spec.rules.len(), 2);
        assert_eq!(spec.rules[0].paths.len(), 2);
        assert_eq!(
            spec.tls,
            vec![IngressTls { hosts: vec!["shop.example".into()], secret_name: "t".into() }]
        );
    }
}
