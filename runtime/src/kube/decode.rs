//! Kubernetes objects sent by clients (kubectl create, run, expose,
//! `create -f`) into podnet's specs. What podnet cannot do is refused with
//! 422 and the field, not dropped: one container per pod, for one.

use serde_json::Value;

use super::status::Status;
use crate::model::env_refs::{EnvRef, FIELD_PATHS, FieldPath, MAX_ENV_REFS, Source};
use crate::model::volumes::{self, KeyToPath, MAX_VOLUME_ITEMS, MAX_VOLUMES, Volume, VolumeMount};
use crate::model::{
    Amount, Annotations, ClusterIpRequest, ContainerPort, ContainerStdin, DEFAULT_AFFINITY_TIMEOUT,
    DeploymentSpec, HostPort, ImageSpec, Labels, PodSpec, PodTemplate, Probe, Protocol, PullPolicy,
    ResourceList, Resources, RunAs, SecurityContext, ServicePort, ServiceSpec, ServiceType, SessionAffinity,
    Strategy, TargetPort, address,
};

/// Where a refusal is reported: the object's kind and name.
pub(super) struct Ctx<'a> {
    /// The object's kind.
    pub(super) kind: &'a str,
    /// The object's name.
    pub(super) name: &'a str,
}

impl Ctx<'_> {
    /// A 422 naming `field` of this object.
    pub(super) fn invalid(&self, field: &str, message: impl Into<String>) -> Status {
        Status::invalid(self.kind, self.name, field, message)
    }
}

/// Checks the object's kind and apiVersion, and gives its name (and that
/// its namespace, if written, is the request's).
pub fn head<'a>(
    body: &'a Value,
    kind: &str,
    api_version: &str,
    namespace: Option<&str>,
) -> Result<&'a str, Status> {
    if !body.is_object() {
        return Err(Status::bad_request(format!("the body is not a {kind} object")));
    }
    if body["kind"].as_str().is_some_and(|k| k != kind)
        || body["apiVersion"].as_str().is_some_and(|v| v != api_version)
    {
        return Err(Status::bad_request(format!(
            "the body is a {} {}, and this URL takes a {api_version} {kind}",
            body["apiVersion"].as_str().unwrap_or("?"),
            body["kind"].as_str().unwrap_or("?")
        )));
    }
    let name = match &body["metadata"]["name"] {
        Value::String(name) if !name.is_empty() => name.as_str(),
        _ if body["metadata"]["generateName"].is_string() => {
            return Err(Status::invalid(
                kind,
                "",
                "metadata.generateName",
                "podnet needs metadata.name: give the object a name",
            ));
        }
        _ => {
            return Err(Status::invalid(
                kind,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
    };
    if let (Some(want), Some(given)) = (namespace, body["metadata"]["namespace"].as_str())
        && !given.is_empty()
        && want != given
    {
        return Err(Status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(name)
}

/// A map of label-like strings at `field` (labels, `matchLabels`).
pub(super) fn labels(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<Labels, Status> {
    match value {
        Value::Null => Ok(Labels::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(v) => Ok((k.clone(), v.to_string())),
                None => Err(ctx.invalid(&format!("{field}.{k}"), "label values are strings")),
            })
            .collect(),
        _ => Err(ctx.invalid(field, "labels are a map of strings")),
    }
}

/// metadata.annotations: a map of strings, within Kubernetes' bound.
pub(super) fn annotations(ctx: &Ctx<'_>, body: &Value) -> Result<Annotations, Status> {
    let field = "metadata.annotations";
    let annotations: Annotations = match &body["metadata"]["annotations"] {
        Value::Null => Annotations::new(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| k.as_str() != super::objects::PROBLEM_ANNOTATION)
            .map(|(k, v)| match v.as_str() {
                Some(v) => Ok((k.clone(), v.to_string())),
                None => Err(ctx.invalid(&format!("{field}.{k}"), "annotation values are strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ctx.invalid(field, "annotations are a map of strings")),
    };
    crate::model::check_annotations(&annotations).map_err(|e| ctx.invalid(field, e.to_string()))?;
    Ok(annotations)
}

fn strings(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<Vec<String>, Status> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ctx.invalid(&format!("{field}[{i}]"), "must be a string"))
            })
            .collect(),
        _ => Err(ctx.invalid(field, "must be a list of strings")),
    }
}

/// Literal variables: names and values.
type Env = Vec<(String, String)>;

/// A container's `env`: names with values, `valueFrom` references to
/// ConfigMap and Secret keys and to the pod's fields (the downward API's
/// `fieldRef`; `resourceFieldRef` is refused, not dropped).
fn env_vars(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<(Env, Vec<EnvRef>), Status> {
    let items = match value {
        Value::Null => return Ok((Vec::new(), Vec::new())),
        Value::Array(items) => items,
        _ => return Err(ctx.invalid(field, "must be a list of {name, value}")),
    };
    let mut env = Vec::with_capacity(items.len());
    let mut refs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let name =
            item["name"].as_str().ok_or_else(|| ctx.invalid(&format!("{at}.name"), "Required value"))?;
        if !item["valueFrom"].is_null() {
            let from = &item["valueFrom"];
            let vf = format!("{at}.valueFrom");
            // Checked as a variable name, with no value.
            crate::model::check_env(&[(name.to_string(), String::new())])
                .map_err(|e| ctx.invalid(&format!("{at}.name"), format!("Invalid value: {e}")))?;
            let (source, r) = match (&from["configMapKeyRef"], &from["secretKeyRef"], &from["fieldRef"]) {
                (Value::Object(_), Value::Null, Value::Null) => (Source::ConfigMap, &from["configMapKeyRef"]),
                (Value::Null, Value::Object(_), Value::Null) => (Source::Secret, &from["secretKeyRef"]),
                (Value::Null, Value::Null, Value::Object(_)) => {
                    refs.push(EnvRef::Field {
                        var: name.to_string(),
                        field: field_ref(ctx, &from["fieldRef"], &vf)?,
                    });
                    continue;
                }
                _ => {
                    return Err(ctx.invalid(
                        &vf,
                        "Forbidden: podnet takes one configMapKeyRef, secretKeyRef or fieldRef (not resourceFieldRef): give a value",
                    ));
                }
            };
            let sf = if source == Source::ConfigMap { "configMapKeyRef" } else { "secretKeyRef" };
            let object = ref_name(ctx, &r["name"], &format!("{vf}.{sf}.name"))?;
            let key = r["key"].as_str().filter(|k| !k.is_empty());
            let key = key.ok_or_else(|| ctx.invalid(&format!("{vf}.{sf}.key"), "Required value"))?;
            refs.push(EnvRef::Key {
                var: name.to_string(),
                source,
                object,
                key: key.to_string(),
                optional: r["optional"].as_bool().unwrap_or(false),
            });
            continue;
        }
        let value = match &item["value"] {
            Value::Null => "",
            Value::String(s) => s,
            _ => return Err(ctx.invalid(&format!("{at}.value"), "must be a string")),
        };
        env.push((name.to_string(), value.to_string()));
    }
    crate::model::check_env(&env).map_err(|e| ctx.invalid(field, format!("Invalid value: {e}")))?;
    Ok((env, refs))
}

/// A `valueFrom.fieldRef` at `vf`: a pod field the downward API gives env.
fn field_ref(ctx: &Ctx<'_>, r: &Value, vf: &str) -> Result<FieldPath, Status> {
    let at = format!("{vf}.fieldRef");
    if let Some(version) = r["apiVersion"].as_str().filter(|v| *v != "v1") {
        return Err(ctx.invalid(
            &format!("{at}.apiVersion"),
            format!("Unsupported value: \"{version}\": supported values: \"v1\""),
        ));
    }
    let path = r["fieldPath"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ctx.invalid(&format!("{at}.fieldPath"), "Required value"))?;
    FieldPath::parse(path).ok_or_else(|| {
        ctx.invalid(
            &format!("{at}.fieldPath"),
            format!("Unsupported value: \"{path}\": supported values: {FIELD_PATHS}"),
        )
    })
}

/// A pod's `volumes`: ConfigMaps and Secrets; other kinds are refused,
/// not dropped.
fn pod_volumes(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<Vec<Volume>, Status> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) if items.len() > MAX_VOLUMES => {
            return Err(ctx.invalid(
                field,
                format!("Too many: {}: podnet takes at most {MAX_VOLUMES} volumes per pod", items.len()),
            ));
        }
        Value::Array(items) => items,
        _ => return Err(ctx.invalid(field, "must be a list of {name, configMap} or {name, secret}")),
    };
    let mut out: Vec<Volume> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let name = v["name"].as_str().filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| ctx.invalid(&format!("{at}.name"), "Required value"))?;
        crate::model::check_name("volume", name, 63)
            .map_err(|e| ctx.invalid(&format!("{at}.name"), format!("Invalid value: {e}")))?;
        if out.iter().any(|o| o.name == name) {
            return Err(ctx.invalid(&format!("{at}.name"), format!("Duplicate value: \"{name}\"")));
        }
        let sources: Vec<&String> =
            v.as_object().into_iter().flatten().map(|(k, _)| k).filter(|k| *k != "name").collect();
        let (source, sf, object_field) = match sources.as_slice() {
            [s] if *s == "configMap" => (Source::ConfigMap, "configMap", "name"),
            [s] if *s == "secret" => (Source::Secret, "secret", "secretName"),
            [] => return Err(ctx.invalid(&at, "Required value: must specify a volume type")),
            [s] => {
                return Err(ctx.invalid(
                    &format!("{at}.{s}"),
                    "Forbidden: podnet mounts configMap and secret volumes only: put the data in a ConfigMap or Secret",
                ));
            }
            _ => return Err(ctx.invalid(&at, "Forbidden: may not specify more than 1 volume type")),
        };
        let r = &v[sf];
        let rf = format!("{at}.{sf}");
        let object = ref_name(ctx, &r[object_field], &format!("{rf}.{object_field}"))?;
        let mode = |m: &Value, f: &str| -> Result<Option<u32>, Status> {
            match m {
                Value::Null => Ok(None),
                m => m.as_u64().filter(|m| volumes::mode_ok(*m)).map(|m| Some(m as u32)).ok_or_else(|| {
                    ctx.invalid(
                        f,
                        format!(
                            "Invalid value: {m}: must be a number between 0 and 0777 (octal), both inclusive"
                        ),
                    )
                }),
            }
        };
        let default_mode = mode(&r["defaultMode"], &format!("{rf}.defaultMode"))?;
        let list = match &r["items"] {
            Value::Null => &Vec::new(),
            Value::Array(l) if l.len() <= MAX_VOLUME_ITEMS => l,
            Value::Array(l) => {
                return Err(ctx.invalid(
                    &format!("{rf}.items"),
                    format!(
                        "Too many: {}: podnet takes at most {MAX_VOLUME_ITEMS} items per volume",
                        l.len()
                    ),
                ));
            }
            _ => return Err(ctx.invalid(&format!("{rf}.items"), "must be a list of {key, path}")),
        };
        let mut items = Vec::with_capacity(list.len());
        for (j, item) in list.iter().enumerate() {
            let itf = format!("{rf}.items[{j}]");
            let key = item["key"].as_str().filter(|k| !k.is_empty());
            let key = key.ok_or_else(|| ctx.invalid(&format!("{itf}.key"), "Required value"))?;
            let path = item["path"].as_str().unwrap_or("");
            volumes::check_file_path(path).map_err(|e| {
                ctx.invalid(&format!("{itf}.path"), format!("Invalid value: \"{path}\": {e}"))
            })?;
            let mode = mode(&item["mode"], &format!("{itf}.mode"))?;
            items.push(KeyToPath { key: key.to_string(), path: path.to_string(), mode });
        }
        out.push(Volume {
            name: name.to_string(),
            source,
            object,
            items,
            optional: r["optional"].as_bool().unwrap_or(false),
            default_mode: default_mode.unwrap_or(volumes::DEFAULT_MODE),
        });
    }
    Ok(out)
}

/// A container's `volumeMounts`, each of one of the pod's `volumes`.
fn volume_mounts(
    ctx: &Ctx<'_>,
    value: &Value,
    field: &str,
    vols: &[Volume],
) -> Result<Vec<VolumeMount>, Status> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) if items.len() > MAX_VOLUMES => {
            return Err(ctx.invalid(
                field,
                format!("Too many: {}: podnet takes at most {MAX_VOLUMES} mounts per container", items.len()),
            ));
        }
        Value::Array(items) => items,
        _ => return Err(ctx.invalid(field, "must be a list of {name, mountPath}")),
    };
    let mut out: Vec<VolumeMount> = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        for f in ["subPath", "subPathExpr", "mountPropagation", "recursiveReadOnly"] {
            if m[f].as_str().is_some_and(|v| !v.is_empty() && v != "None" && v != "Disabled") {
                return Err(ctx.invalid(
                    &format!("{at}.{f}"),
                    "Forbidden: podnet does not support this field yet: mount the whole volume",
                ));
            }
        }
        let name = m["name"].as_str().filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| ctx.invalid(&format!("{at}.name"), "Required value"))?;
        if !vols.iter().any(|v| v.name == name) {
            return Err(ctx.invalid(&format!("{at}.name"), format!("Not found: \"{name}\"")));
        }
        let path = m["mountPath"].as_str().unwrap_or("");
        volumes::check_mount_path(path).map_err(|e| {
            ctx.invalid(&format!("{at}.mountPath"), format!("Invalid value: \"{path}\": {e}"))
        })?;
        if out.iter().any(|o| o.mount_path == path) {
            return Err(
                ctx.invalid(&format!("{at}.mountPath"), format!("Invalid value: \"{path}\": must be unique"))
            );
        }
        out.push(VolumeMount {
            name: name.to_string(),
            mount_path: path.to_string(),
            read_only: m["readOnly"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// A container's `envFrom`: every key of a ConfigMap or Secret, prefixed.
fn env_from(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<Vec<EnvRef>, Status> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(ctx.invalid(field, "must be a list of {configMapRef} or {secretRef}")),
    };
    let mut refs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (source, sf) = match (&item["configMapRef"], &item["secretRef"]) {
            (Value::Object(_), Value::Null) => (Source::ConfigMap, "configMapRef"),
            (Value::Null, Value::Object(_)) => (Source::Secret, "secretRef"),
            _ => return Err(ctx.invalid(&at, "Invalid value: give one of configMapRef or secretRef")),
        };
        let r = &item[sf];
        let prefix = match &item["prefix"] {
            Value::Null => String::new(),
            Value::String(p) => p.clone(),
            _ => return Err(ctx.invalid(&format!("{at}.prefix"), "must be a string")),
        };
        refs.push(EnvRef::All {
            source,
            object: ref_name(ctx, &r["name"], &format!("{at}.{sf}.name"))?,
            prefix,
            optional: r["optional"].as_bool().unwrap_or(false),
        });
    }
    Ok(refs)
}

/// The object a reference names (`name`, a Secret volume's `secretName`):
/// a valid ConfigMap or Secret name.
fn ref_name(ctx: &Ctx<'_>, name: &Value, field: &str) -> Result<String, Status> {
    let name = name.as_str().filter(|n| !n.is_empty()).ok_or_else(|| ctx.invalid(field, "Required value"))?;
    crate::model::check_name("object", name, 253)
        .map_err(|e| ctx.invalid(field, format!("Invalid value: {e}")))?;
    Ok(name.to_string())
}

fn port_number(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<u16, Status> {
    value.as_u64().filter(|p| (1..=65535).contains(p)).map(|p| p as u16).ok_or_else(|| {
        ctx.invalid(field, format!("Invalid value: {value}: must be between 1 and 65535, inclusive"))
    })
}

fn protocol(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<Protocol, Status> {
    match value.as_str().unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        other => Err(
            ctx.invalid(field, format!("Unsupported value: \"{other}\": supported values: \"TCP\", \"UDP\""))
        ),
    }
}

fn resource_list(ctx: &Ctx<'_>, value: &Value, field: &str) -> Result<ResourceList, Status> {
    let Some(map) = value.as_object() else { return Ok(ResourceList::default()) };
    let mut text = Vec::new();
    for (key, amount) in map {
        let amount = match amount {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(ctx.invalid(&format!("{field}.{key}"), "must be a quantity")),
        };
        text.push(format!("{key}={amount}"));
    }
    text.join(",").parse().map_err(|e: crate::model::ModelError| ctx.invalid(field, e.to_string()))
}

/// A pod's one container and pod-level fields, as podnet's pod template.
fn pod_parts(ctx: &Ctx<'_>, spec: &Value, at: &str) -> Result<PodTemplate, Status> {
    let containers = spec["containers"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ctx.invalid(&format!("{at}.containers"), "Required value"))?;
    if containers.len() > 1 {
        return Err(ctx.invalid(
            &format!("{at}.containers"),
            format!(
                "Too many: {}: podnet runs one container per pod: put the others in pods of their own",
                containers.len()
            ),
        ));
    }
    let c = &containers[0];
    let cf = format!("{at}.containers[0]");
    // Fields podnet would not act on: refused, not dropped, so a pod never
    // runs without what its manifest asked for.
    let unsupported = |object: &Value, fields: &[&str], at: &str| -> Result<(), Status> {
        for field in fields {
            let set = match &object[*field] {
                Value::Null | Value::Bool(false) => false,
                Value::Array(v) => !v.is_empty(),
                Value::Object(m) => !m.is_empty() || *field != "nodeSelector",
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if set {
                return Err(ctx
                    .invalid(&format!("{at}.{field}"), "Forbidden: podnet does not support this field yet"));
            }
        }
        Ok(())
    };
    unsupported(
        spec,
        &[
            "initContainers",
            "ephemeralContainers",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "nodeSelector",
            "affinity",
        ],
        at,
    )?;
    unsupported(c, &["workingDir", "volumeDevices", "livenessProbe", "startupProbe", "lifecycle"], &cf)?;
    let command = strings(ctx, &c["command"], &format!("{cf}.command"))?;
    let args = strings(ctx, &c["args"], &format!("{cf}.args"))?;
    let (env, mut env_refs) = env_vars(ctx, &c["env"], &format!("{cf}.env"))?;
    env_refs.extend(env_from(ctx, &c["envFrom"], &format!("{cf}.envFrom"))?);
    if env_refs.len() > MAX_ENV_REFS {
        return Err(ctx.invalid(
            &format!("{cf}.env"),
            format!("Too many: {}: podnet takes at most {MAX_ENV_REFS} valueFrom and envFrom references per container", env_refs.len()),
        ));
    }
    let vols = pod_volumes(ctx, &spec["volumes"], &format!("{at}.volumes"))?;
    let mounts = volume_mounts(ctx, &c["volumeMounts"], &format!("{cf}.volumeMounts"), &vols)?;
    let image = match c["image"].as_str().filter(|i| !i.is_empty()) {
        Some(image) => Some(ImageSpec {
            image: image.to_string(),
            pull_policy: match c["imagePullPolicy"].as_str() {
                Some(p) => p
                    .parse::<PullPolicy>()
                    .map_err(|e| ctx.invalid(&format!("{cf}.imagePullPolicy"), e.to_string()))?,
                None => PullPolicy::default_for(image),
            },
            command: command.clone(),
            args: args.clone(),
            env,
            env_refs,
            env_error: None,
            volumes: vols,
            mounts,
            files: Vec::new(),
            // Without stdin there is no input to close.
            stdin_once: c["stdinOnce"].as_bool() == Some(true) && c["stdin"].as_bool() == Some(true),
            stdin: match (c["stdin"].as_bool() == Some(true), c["tty"].as_bool() == Some(true)) {
                (_, true) => ContainerStdin::Tty,
                (true, false) => ContainerStdin::Open,
                (false, false) => ContainerStdin::Closed,
            },
        }),
        None if !vols.is_empty() => {
            return Err(ctx.invalid(
                &format!("{at}.volumes"),
                "Forbidden: a pod without an image runs a host command on the node's files: give it an image",
            ));
        }
        None if !env.is_empty() || !env_refs.is_empty() => {
            return Err(ctx.invalid(
                &format!("{cf}.env"),
                "Forbidden: a pod without an image runs a host command: set its variables in the command (env NAME=value ...)",
            ));
        }
        None => None,
    };
    let mut ports = Vec::new();
    let mut host_ports = Vec::new();
    for (i, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let pf = format!("{cf}.ports[{i}]");
        let port = port_number(ctx, &p["containerPort"], &format!("{pf}.containerPort"))?;
        let proto = protocol(ctx, &p["protocol"], &format!("{pf}.protocol"))?;
        let name = p["name"].as_str().map(str::to_string);
        if let Some(name) = &name {
            crate::model::check_port_name(name)
                .map_err(|e| ctx.invalid(&format!("{pf}.name"), e.to_string()))?;
        }
        ports.push(ContainerPort { name, port, protocol: proto });
        if !p["hostPort"].is_null() && p["hostPort"].as_u64() != Some(0) {
            let host_port = port_number(ctx, &p["hostPort"], &format!("{pf}.hostPort"))?;
            let field = format!("{pf}.hostIP");
            let host_ip = match p["hostIP"].as_str() {
                Some(ip) => {
                    let ip = ip.parse().map_err(|_| ctx.invalid(&field, "must be an IPv4 address"))?;
                    Some(address::refuse_ipv6(&field, ip).map_err(|e| ctx.invalid(&field, e.to_string()))?)
                }
                None => None,
            }
            .filter(|ip: &std::net::IpAddr| !ip.is_unspecified());
            host_ports.push(HostPort { host_ip, host_port, port, protocol: proto });
        }
    }
    let probe = &c["readinessProbe"];
    let readiness = if probe.is_null() {
        None
    } else if !probe["tcpSocket"].is_null() {
        Some(Probe::Tcp {
            port: port_number(
                ctx,
                &probe["tcpSocket"]["port"],
                &format!("{cf}.readinessProbe.tcpSocket.port"),
            )?,
        })
    } else if !probe["httpGet"].is_null() {
        let port = port_number(ctx, &probe["httpGet"]["port"], &format!("{cf}.readinessProbe.httpGet.port"))?;
        Some(Probe::Http { port, path: probe["httpGet"]["path"].as_str().unwrap_or("/").to_string() })
    } else {
        return Err(ctx.invalid(
            &format!("{cf}.readinessProbe"),
            "podnet probes with tcpSocket or httpGet (a numbered port)",
        ));
    };
    let sc = &c["securityContext"];
    let id = |v: &Value, f: &str| -> Result<Option<u32>, Status> {
        match v {
            Value::Null => Ok(None),
            v => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| {
                ctx.invalid(&format!("{cf}.securityContext.{f}"), "must be a user or group id")
            }),
        }
    };
    let run_as = match (id(&sc["runAsUser"], "runAsUser")?, id(&sc["runAsGroup"], "runAsGroup")?) {
        (Some(uid), gid) => Some(RunAs { uid, gid: gid.unwrap_or(uid) }),
        (None, Some(_)) => {
            return Err(ctx.invalid(
                &format!("{cf}.securityContext.runAsGroup"),
                "podnet needs runAsUser with runAsGroup",
            ));
        }
        (None, None) => None,
    };
    let security = SecurityContext { privileged: sc["privileged"].as_bool().unwrap_or(false), run_as };
    let resources = Resources {
        limits: resource_list(ctx, &c["resources"]["limits"], &format!("{cf}.resources.limits"))?,
        requests: resource_list(ctx, &c["resources"]["requests"], &format!("{cf}.resources.requests"))?,
    };
    // A command pod (no image: podnet's own) runs command and args on the
    // node's filesystem; an image pod's process is worked out by the node
    // from the image's ENTRYPOINT and CMD (ImageSpec::process).
    let command = if image.is_some() { Vec::new() } else { command.into_iter().chain(args).collect() };
    let container = match c["name"].as_str() {
        Some(n) if n != ctx.name => {
            crate::model::check_name("container", n, 63)
                .map_err(|e| ctx.invalid(&format!("{cf}.name"), e.to_string()))?;
            Some(n.to_string())
        }
        _ => None,
    };
    Ok(PodTemplate { command, image, ports, host_ports, readiness, security, resources, container })
}

/// A v1 Namespace: its name, labels and annotations.
pub fn namespace(body: &Value) -> Result<(String, Labels, Annotations), Status> {
    let name = head(body, "Namespace", "v1", None)?;
    let ctx = Ctx { kind: "Namespace", name };
    crate::model::check_name("namespace", name, 63)
        .map_err(|e| ctx.invalid("metadata.name", e.to_string()))?;
    let labels = labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?;
    for (k, v) in &labels {
        crate::model::check_label(k, v).map_err(|e| ctx.invalid("metadata.labels", e.to_string()))?;
    }
    Ok((name.to_string(), labels, annotations(&ctx, body)?))
}

/// A v1 Pod into a [`PodSpec`] in `namespace`.
pub fn pod(body: &Value, namespace: &str) -> Result<PodSpec, Status> {
    let name = head(body, "Pod", "v1", Some(namespace))?;
    let ctx = Ctx { kind: "Pod", name };
    let spec = &body["spec"];
    let template = pod_parts(&ctx, spec, "spec")?;
    let restart_policy = match spec["restartPolicy"].as_str() {
        Some(p) => p
            .parse()
            .map_err(|e: crate::model::ModelError| ctx.invalid("spec.restartPolicy", e.to_string()))?,
        None => Default::default(),
    };
    Ok(PodSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        template,
        restart_policy,
        owner: None,
        node_name: spec["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_string),
        annotations: annotations(&ctx, body)?,
        attachment: None,
    })
}

/// An apps/v1 Deployment into a [`DeploymentSpec`] in `namespace`.
pub fn deployment(body: &Value, namespace: &str) -> Result<DeploymentSpec, Status> {
    let name = head(body, "Deployment", "apps/v1", Some(namespace))?;
    let ctx = Ctx { kind: "Deployment", name };
    let spec = &body["spec"];
    let replicas = match &spec["replicas"] {
        Value::Null => 1,
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ctx.invalid("spec.replicas", "must be a number from 0"))?,
    };
    let template_labels =
        labels(&ctx, &spec["template"]["metadata"]["labels"], "spec.template.metadata.labels")?;
    let selector = &spec["selector"];
    if selector["matchExpressions"].as_array().is_some_and(|e| !e.is_empty()) {
        return Err(ctx.invalid(
            "spec.selector.matchExpressions",
            "podnet selects a deployment's pods with matchLabels only",
        ));
    }
    let match_labels = labels(&ctx, &selector["matchLabels"], "spec.selector.matchLabels")?;
    if match_labels.is_empty() {
        return Err(ctx.invalid("spec.selector", "Required value"));
    }
    if match_labels.iter().any(|(k, v)| template_labels.get(k) != Some(v)) {
        return Err(ctx.invalid(
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        ));
    }
    if spec["template"]["spec"]["restartPolicy"].as_str().is_some_and(|p| p != "Always") {
        return Err(ctx
            .invalid("spec.template.spec.restartPolicy", "Unsupported value: only \"Always\" is supported"));
    }
    let template = pod_parts(&ctx, &spec["template"]["spec"], "spec.template.spec")?;
    Ok(DeploymentSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        replicas,
        labels: template_labels,
        template,
        annotations: annotations(&ctx, body)?,
        object_labels: match &body["metadata"]["labels"] {
            Value::Null => None,
            value => Some(labels(&ctx, value, "metadata.labels")?),
        },
        selector: Some(match_labels),
        strategy: strategy(&ctx, &spec["strategy"])?,
        template_annotations: annotations(&ctx, &spec["template"])?,
    })
}

/// spec.strategy: RollingUpdate (its maxSurge and maxUnavailable, counts
/// or percentages) or Recreate.
fn strategy(ctx: &Ctx<'_>, value: &Value) -> Result<Strategy, Status> {
    let at = "spec.strategy.rollingUpdate";
    match value["type"].as_str() {
        None | Some("RollingUpdate") => {
            let amount = |v: &Value, field: &str| -> Result<Amount, Status> {
                let bad = || {
                    ctx.invalid(
                        &format!("{at}.{field}"),
                        format!("Invalid value: {v}: a number or a percentage (25%)"),
                    )
                };
                match v {
                    Value::Null => Ok(Amount::Percent(25)),
                    Value::Number(n) => {
                        n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Amount::Count).ok_or_else(bad)
                    }
                    Value::String(s) => s
                        .strip_suffix('%')
                        .and_then(|p| p.parse::<u32>().ok())
                        .map(Amount::Percent)
                        .ok_or_else(bad),
                    _ => Err(bad()),
                }
            };
            let rolling = &value["rollingUpdate"];
            let max_surge = amount(&rolling["maxSurge"], "maxSurge")?;
            let max_unavailable = amount(&rolling["maxUnavailable"], "maxUnavailable")?;
            if let Amount::Percent(p) = max_unavailable
                && p > 100
            {
                return Err(ctx.invalid(
                    &format!("{at}.maxUnavailable"),
                    format!("Invalid value: \"{p}%\": must not be greater than 100%"),
                ));
            }
            if max_surge.of(100, true) == 0 && max_unavailable.of(100, false) == 0 {
                return Err(ctx.invalid(
                    &format!("{at}.maxUnavailable"),
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                ));
            }
            Ok(Strategy::RollingUpdate { max_surge, max_unavailable })
        }
        Some("Recreate") if value["rollingUpdate"].is_null() => Ok(Strategy::Recreate),
        Some("Recreate") => {
            Err(ctx.invalid(at, "Forbidden: may not be specified when strategy `type` is 'Recreate'"))
        }
        Some(other) => Err(ctx.invalid(
            "spec.strategy.type",
            format!("Unsupported value: \"{other}\": supported values: \"Recreate\", \"RollingUpdate\""),
        )),
    }
}

/// The replica count of a Scale (PUT) or of a merge patch to it.
pub fn replicas(body: &Value, name: &str) -> Result<u32, Status> {
    let value = &body["spec"]["replicas"];
    value.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        Status::invalid(
            "Scale",
            name,
            "spec.replicas",
            format!("Invalid value: {value}: must be a number from 0"),
        )
    })
}

/// A v1 Service into a [`ServiceSpec`] in `namespace`.
pub fn service(body: &Value, namespace: &str) -> Result<ServiceSpec, Status> {
    let name = head(body, "Service", "v1", Some(namespace))?;
    let ctx = Ctx { kind: "Service", name };
    let spec = &body["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    let external_name =
        (kind == "ExternalName").then(|| spec["externalName"].as_str().unwrap_or("").to_string());
    let service_type = match kind {
        "ExternalName" => ServiceType::ClusterIP,
        other => other.parse().map_err(|_| {
            ctx.invalid("spec.type", format!("Unsupported value: \"{other}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""))
        })?,
    };
    let cluster_ip = match spec["clusterIP"].as_str() {
        None | Some("") => ClusterIpRequest::Auto,
        Some("None") => ClusterIpRequest::None,
        Some(ip) => {
            let ip = ip.parse().map_err(|_| {
                ctx.invalid(
                    "spec.clusterIP",
                    format!("Invalid value: \"{ip}\": must be an IPv4 address or None"),
                )
            })?;
            let ip = address::refuse_ipv6("spec.clusterIP", ip)
                .map_err(|e| ctx.invalid("spec.clusterIP", e.to_string()))?;
            ClusterIpRequest::Fixed(ip)
        }
    };
    let mut ports = Vec::new();
    for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
        let pf = format!("spec.ports[{i}]");
        let port = port_number(&ctx, &p["port"], &format!("{pf}.port"))?;
        let target_port = match &p["targetPort"] {
            Value::Null => TargetPort::Number(port),
            Value::String(s) => s.parse().map_err(|e: crate::model::ModelError| {
                ctx.invalid(&format!("{pf}.targetPort"), e.to_string())
            })?,
            v => TargetPort::Number(port_number(&ctx, v, &format!("{pf}.targetPort"))?),
        };
        // 0 asks for one to be allocated, as leaving it out does.
        let node_port = match &p["nodePort"] {
            Value::Null => None,
            v if v.as_u64() == Some(0) => None,
            v => Some(port_number(&ctx, v, &format!("{pf}.nodePort"))?),
        };
        ports.push(ServicePort {
            name: p["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string),
            port,
            target_port,
            protocol: protocol(&ctx, &p["protocol"], &format!("{pf}.protocol"))?,
            node_port,
        });
    }
    let session_affinity = match spec["sessionAffinity"].as_str() {
        None | Some("None") => SessionAffinity::None,
        Some("ClientIP") => SessionAffinity::ClientIp {
            timeout_seconds: spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
                .as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
        },
        Some(other) => {
            return Err(ctx.invalid(
                "spec.sessionAffinity",
                format!("Unsupported value: \"{other}\": supported values: \"ClientIP\", \"None\""),
            ));
        }
    };
    Ok(ServiceSpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        cluster_ip,
        ports,
        selector: labels(&ctx, &spec["selector"], "spec.selector")?,
        session_affinity,
        external_name,
        service_type,
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        annotations: annotations(&ctx, body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `kubectl create deployment web --image=busybox --port=80 -- sleep 1` sends.
    fn kubectl_deployment() -> Value {
        json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": { "name": "web", "creationTimestamp": null, "labels": { "app": "web" } },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "creationTimestamp": null, "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "busybox", "image": "busybox", "command": ["sleep", "1"], "ports": [{ "containerPort": 80 }], "resources": {} }] }
                },
                "strategy": {}
            },
            "status": {}
        })
    }

    #[test]
    fn kubectls_deployment_becomes_a_podnet_deployment() {
        let d = deployment(&kubectl_deployment(), "default").unwrap();
        assert_eq!(d.replicas, 1);
        assert_eq!(d.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(d.template.ports[0].port, 80);
        let image = d.template.image.unwrap();
        assert_eq!((image.image.as_str(), image.pull_policy), ("busybox", PullPolicy::Always));
        // An image pod: the container's command is the image spec's, the
        // host command is empty.
        assert_eq!(image.command, ["sleep", "1"]);
        assert!(d.template.command.is_empty());
    }

    #[test]
    fn what_podnet_cannot_run_is_refused_with_its_field() {
        let mut two = kubectl_deployment();
        let c = two["spec"]["template"]["spec"]["containers"][0].clone();
        two["spec"]["template"]["spec"]["containers"] = json!([c.clone(), c]);
        let e = deployment(&two, "default").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.causes[0].0, "spec.template.spec.containers");
        assert!(e.message.contains("one container per pod"), "{}", e.message);

        let mut mismatch = kubectl_deployment();
        mismatch["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        assert_eq!(
            deployment(&mismatch, "default").unwrap_err().causes[0].0,
            "spec.template.metadata.labels"
        );

        let mut port = kubectl_deployment();
        port["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(70000);
        let e = deployment(&port, "default").unwrap_err();
        assert_eq!(e.causes[0].0, "spec.template.spec.containers[0].ports[0].containerPort");

        let mut env = kubectl_deployment();
        let at = "spec.template.spec.containers[0].env";
        env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{ "name": "A", "value": "b" }, { "name": "EMPTY" }]);
        let image = deployment(&env, "default").unwrap().template.image.unwrap();
        assert_eq!(image.env, [("A".to_string(), "b".to_string()), ("EMPTY".to_string(), String::new())]);
        env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{ "name": "A", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k", "optional": true } } }]);
        let c = &mut env["spec"]["template"]["spec"]["containers"][0];
        c["envFrom"] = json!([{ "configMapRef": { "name": "app" }, "prefix": "APP_" }]);
        let image = deployment(&env, "default").unwrap().template.image.unwrap();
        assert_eq!(
            image.env_refs,
            [
                EnvRef::Key {
                    var: "A".into(),
                    source: Source::Secret,
                    object: "s".into(),
                    key: "k".into(),
                    optional: true
                },
                EnvRef::All {
                    source: Source::ConfigMap,
                    object: "app".into(),
                    prefix: "APP_".into(),
                    optional: false
                },
            ]
        );
        env["spec"]["template"]["spec"]["containers"][0]["envFrom"] = Value::Null;
        env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{ "name": "A", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu" } } }]);
        let e = deployment(&env, "default").unwrap_err();
        assert_eq!(e.causes[0].0, format!("{at}[0].valueFrom"));
        env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{ "name": "A", "valueFrom": { "configMapKeyRef": { "name": "app" } } }]);
        let e = deployment(&env, "default").unwrap_err();
        assert_eq!(e.causes[0].0, format!("{at}[0].valueFrom.configMapKeyRef.key"));
        env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{ "name": "A=B", "value": "x" }]);
        let e = deployment(&env, "default").unwrap_err();
        assert!(e.causes[0].0 == at && e.message.contains("without '='"), "{}", e.message);
        let many: Vec<Value> = (0..300).map(|i| json!({ "name": format!("V{i}"), "value": "x" })).collect();
        env["spec"]["template"]["spec"]["containers"][0]["env"] = json!(many);
        assert!(deployment(&env, "default").unwrap_err().message.contains("too large"));
        let mut host = kubectl_deployment();
        host["spec"]["template"]["spec"]["hostNetwork"] = json!(false);
        host["spec"]["template"]["spec"]["nodeSelector"] = json!({});
        assert!(deployment(&host, "default").is_ok(), "unset values are not refused");
        host["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        assert_eq!(deployment(&host, "default").unwrap_err().causes[0].0, "spec.template.spec.hostNetwork");

        let other_ns =
            json!({ "kind": "Pod", "apiVersion": "v1", "metadata": { "name": "x", "namespace": "a" } });
        assert_eq!(pod(&other_ns, "b").unwrap_err().code, 400);
        let wrong_kind = json!({ "kind": "Service", "apiVersion": "v1", "metadata": { "name": "x" } });
        assert_eq!(pod(&wrong_kind, "b").unwrap_err().code, 400);
    }

    #[test]
    fn configmap_and_secret_volumes_and_the_downward_api_are_read_and_checked() {
        let mut d = kubectl_deployment();
        let spec = &mut d["spec"]["template"]["spec"];
        spec["volumes"] = json!([
            { "name": "cfg", "configMap": { "name": "app", "items": [{ "key": "k", "path": "conf/k", "mode": 0o600 }], "optional": true } },
            { "name": "db", "secret": { "secretName": "db", "defaultMode": 0o400 } },
        ]);
        spec["containers"][0]["volumeMounts"] =
            json!([{ "name": "cfg", "mountPath": "/etc/app", "readOnly": true }]);
        spec["containers"][0]["env"] = json!([
            { "name": "MY_POD_IP", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "status.podIP" } } },
            { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
        ]);
        let image = deployment(&d, "default").unwrap().template.image.unwrap();
        assert_eq!(
            image.env_refs,
            [
                EnvRef::Field { var: "MY_POD_IP".into(), field: FieldPath::PodIp },
                EnvRef::Field { var: "APP".into(), field: FieldPath::Label("app".into()) },
            ]
        );
        assert_eq!(
            image.volumes,
            [
                Volume {
                    name: "cfg".into(),
                    source: Source::ConfigMap,
                    object: "app".into(),
                    items: vec![KeyToPath { key: "k".into(), path: "conf/k".into(), mode: Some(0o600) }],
                    optional: true,
                    default_mode: 0o644,
                },
                Volume {
                    name: "db".into(),
                    source: Source::Secret,
                    object: "db".into(),
                    items: vec![],
                    optional: false,
                    default_mode: 0o400,
                },
            ]
        );
        assert_eq!(
            image.mounts,
            [VolumeMount { name: "cfg".into(), mount_path: "/etc/app".into(), read_only: true }]
        );
        // As the API shows it again, and read back the same.
        let mut shown = kubectl_deployment();
        shown["spec"]["template"]["spec"] =
            crate::kube::objects::deployment_template_spec_for_tests(&deployment(&d, "default").unwrap());
        assert_eq!(
            deployment(&shown, "default").unwrap().template,
            deployment(&d, "default").unwrap().template
        );

        let refused = |f: &dyn Fn(&mut Value)| {
            let mut d = d.clone();
            f(&mut d["spec"]["template"]["spec"]);
            let e = deployment(&d, "default").unwrap_err();
            (e.causes[0].0.trim_start_matches("spec.template.spec.").to_string(), e.message)
        };
        let (at, why) = refused(&|s| s["volumes"][0] = json!({ "name": "cfg", "emptyDir": {} }));
        assert!(
            at == "volumes[0].emptyDir" && why.contains("configMap and secret volumes only"),
            "{at}: {why}"
        );
        let (at, _) = refused(&|s| s["volumes"][1]["name"] = json!("cfg"));
        assert_eq!(at, "volumes[1].name");
        let (at, _) =
            refused(&|s| s["volumes"][0]["configMap"]["items"][0]["path"] = json!("../../etc/passwd"));
        assert_eq!(at, "volumes[0].configMap.items[0].path");
        let (at, _) = refused(&|s| s["volumes"][1]["secret"]["defaultMode"] = json!(0o7777));
        assert_eq!(at, "volumes[1].secret.defaultMode");
        let (at, why) = refused(&|s| s["containers"][0]["volumeMounts"][0]["name"] = json!("nope"));
        assert!(at == "containers[0].volumeMounts[0].name" && why.contains("Not found"), "{at}: {why}");
        let (at, _) = refused(&|s| s["containers"][0]["volumeMounts"][0]["mountPath"] = json!("/"));
        assert_eq!(at, "containers[0].volumeMounts[0].mountPath");
        let (at, _) = refused(&|s| s["containers"][0]["volumeMounts"][0]["subPath"] = json!("k"));
        assert_eq!(at, "containers[0].volumeMounts[0].subPath");
        let (at, why) = refused(&|s| {
            s["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] = json!("status.phase")
        });
        assert!(
            at == "containers[0].env[0].valueFrom.fieldRef.fieldPath" && why.contains("Unsupported value"),
            "{why}"
        );
        let many: Vec<Value> =
            (0..17).map(|i| json!({ "name": format!("v{i}"), "secret": { "secretName": "s" } })).collect();
        let (at, _) = refused(&|s| s["volumes"] = json!(many));
        assert_eq!(at, "volumes");
        let (at, _) = refused(&|s| {
            s["containers"][0]["image"] = Value::Null;
            s["containers"][0]["env"] = Value::Null;
        });
        assert_eq!(at, "volumes");
    }

    #[test]
    fn a_strategy_is_read_with_kubernetes_rules() {
        let mut d = kubectl_deployment();
        assert_eq!(deployment(&d, "default").unwrap().strategy, Strategy::default());
        d["spec"]["strategy"] =
            json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": "0%" } });
        let s = deployment(&d, "default").unwrap().strategy;
        assert_eq!(
            s,
            Strategy::RollingUpdate { max_surge: Amount::Count(1), max_unavailable: Amount::Percent(0) }
        );
        assert_eq!(s.bounds(4), (1, 0));
        d["spec"]["strategy"] = json!({ "type": "Recreate" });
        assert_eq!(deployment(&d, "default").unwrap().strategy, Strategy::Recreate);
        for (bad, field) in [
            (
                json!({ "rollingUpdate": { "maxSurge": 0, "maxUnavailable": 0 } }),
                "spec.strategy.rollingUpdate.maxUnavailable",
            ),
            (json!({ "rollingUpdate": { "maxSurge": "x%" } }), "spec.strategy.rollingUpdate.maxSurge"),
            (json!({ "type": "Recreate", "rollingUpdate": {} }), "spec.strategy.rollingUpdate"),
            (json!({ "type": "BlueGreen" }), "spec.strategy.type"),
        ] {
            d["spec"]["strategy"] = bad;
            assert_eq!(deployment(&d, "default").unwrap_err().causes[0].0, field);
        }
    }

    #[test]
    fn a_service_keeps_its_ports_selector_and_affinity() {
        let body = json!({
            "kind": "Service", "apiVersion": "v1", "metadata": { "name": "web" },
            "spec": { "type": "NodePort", "selector": { "app": "web" }, "sessionAffinity": "ClientIP",
                "ports": [{ "name": "http", "port": 80, "targetPort": "http", "nodePort": 30080 }, { "name": "dns", "port": 53, "protocol": "UDP" }] }
        });
        let s = service(&body, "default").unwrap();
        assert_eq!(s.service_type, ServiceType::NodePort);
        assert_eq!(s.ports[0].target_port, TargetPort::Name("http".into()));
        assert_eq!(s.ports[0].node_port, Some(30080));
        assert_eq!(
            (s.ports[1].target_port.clone(), s.ports[1].protocol),
            (TargetPort::Number(53), Protocol::Udp)
        );
        assert_eq!(
            s.session_affinity,
            SessionAffinity::ClientIp { timeout_seconds: DEFAULT_AFFINITY_TIMEOUT }
        );
        let headless = json!({ "kind": "Service", "apiVersion": "v1", "metadata": { "name": "h" }, "spec": { "clusterIP": "None", "ports": [{ "port": 80 }] } });
        assert_eq!(service(&headless, "default").unwrap().cluster_ip, ClusterIpRequest::None);
    }
}
