//! Kubernetes' protobuf bodies, read into the same JSON shape as JSON
//! bodies. kubectl's typed commands (`create deployment`, `create service`)
//! send `application/vnd.kubernetes.protobuf`: the "k8s\0" magic, then a
//! runtime.Unknown holding the kind and the object's bytes. Only the fields
//! podnet reads are mapped (numbers from k8s.io/api's generated.proto);
//! fields podnet refuses (volumes, more containers) are kept as markers so
//! the decoder refuses them as it does in JSON; the rest is skipped.

use serde_json::{Map, Value, json};

use super::status::Status;

/// The envelope's magic.
const MAGIC: &[u8] = b"k8s\0";
/// Deepest nesting read (the schemas are about 8 deep).
const MAX_DEPTH: usize = 16;

/// How a field is read.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Msg(&'static [Field]),
    /// map<string, string>.
    MapStr,
    /// map<string, bytes>: each value in base64, as JSON carries bytes.
    MapBytes,
    /// bytes, in base64.
    Bytes,
    /// map<string, Quantity>: the quantity's string.
    MapQty,
    IntOrString,
    /// A field podnet refuses: present as an empty object.
    Marker,
}

/// A field: number, JSON name, type, whether repeated.
type Field = (u32, &'static str, Ty, bool);

const TYPE_META: &[Field] = &[(1, "apiVersion", Ty::Str, false), (2, "kind", Ty::Str, false)];
const QUANTITY: &[Field] = &[(1, "string", Ty::Str, false)];
const UNKNOWN: &[Field] = &[(1, "typeMeta", Ty::Msg(TYPE_META), false)];
const OBJECT_META: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "generateName", Ty::Str, false),
    (3, "namespace", Ty::Str, false),
    (11, "labels", Ty::MapStr, false),
    (12, "annotations", Ty::MapStr, false),
];
const LABEL_SELECTOR: &[Field] =
    &[(1, "matchLabels", Ty::MapStr, false), (2, "matchExpressions", Ty::Marker, true)];
const CONTAINER_PORT: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "hostPort", Ty::Int, false),
    (3, "containerPort", Ty::Int, false),
    (4, "protocol", Ty::Str, false),
    (5, "hostIP", Ty::Str, false),
];
/// LocalObjectReference, embedded in the selectors below: its name is lifted.
const LOCAL_REF: &[Field] = &[(1, "name", Ty::Str, false)];
const KEY_SELECTOR: &[Field] =
    &[(1, "", Ty::Msg(LOCAL_REF), false), (2, "key", Ty::Str, false), (3, "optional", Ty::Bool, false)];
const ENV_VAR_SOURCE: &[Field] = &[
    (1, "fieldRef", Ty::Marker, false),
    (2, "resourceFieldRef", Ty::Marker, false),
    (3, "configMapKeyRef", Ty::Msg(KEY_SELECTOR), false),
    (4, "secretKeyRef", Ty::Msg(KEY_SELECTOR), false),
];
const ENV_VAR: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "value", Ty::Str, false),
    (3, "valueFrom", Ty::Msg(ENV_VAR_SOURCE), false),
];
const ENV_SOURCE_REF: &[Field] = &[(1, "", Ty::Msg(LOCAL_REF), false), (2, "optional", Ty::Bool, false)];
const ENV_FROM: &[Field] = &[
    (1, "prefix", Ty::Str, false),
    (2, "configMapRef", Ty::Msg(ENV_SOURCE_REF), false),
    (3, "secretRef", Ty::Msg(ENV_SOURCE_REF), false),
];
const RESOURCES: &[Field] = &[(1, "limits", Ty::MapQty, false), (2, "requests", Ty::MapQty, false)];
const HTTP_GET: &[Field] = &[(1, "path", Ty::Str, false), (2, "port", Ty::IntOrString, false)];
const TCP_SOCKET: &[Field] = &[(1, "port", Ty::IntOrString, false)];
/// Probe embeds ProbeHandler as field 1; its fields are lifted into the probe.
const PROBE_HANDLER: &[Field] = &[
    (1, "exec", Ty::Marker, false),
    (2, "httpGet", Ty::Msg(HTTP_GET), false),
    (3, "tcpSocket", Ty::Msg(TCP_SOCKET), false),
];
const PROBE: &[Field] = &[(1, "", Ty::Msg(PROBE_HANDLER), false)];
const SECURITY_CONTEXT: &[Field] = &[
    (2, "privileged", Ty::Bool, false),
    (4, "runAsUser", Ty::Int, false),
    (8, "runAsGroup", Ty::Int, false),
];
const CONTAINER: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "image", Ty::Str, false),
    (3, "command", Ty::Str, true),
    (4, "args", Ty::Str, true),
    (6, "ports", Ty::Msg(CONTAINER_PORT), true),
    (8, "resources", Ty::Msg(RESOURCES), false),
    (11, "readinessProbe", Ty::Msg(PROBE), false),
    (14, "imagePullPolicy", Ty::Str, false),
    (15, "securityContext", Ty::Msg(SECURITY_CONTEXT), false),
    (7, "env", Ty::Msg(ENV_VAR), true),
    // Refused by the decoder when set.
    (5, "workingDir", Ty::Str, false),
    (19, "envFrom", Ty::Msg(ENV_FROM), true),
    (9, "volumeMounts", Ty::Marker, true),
    (21, "volumeDevices", Ty::Marker, true),
    (10, "livenessProbe", Ty::Marker, false),
    (22, "startupProbe", Ty::Marker, false),
    (12, "lifecycle", Ty::Marker, false),
    (16, "stdin", Ty::Bool, false),
    (18, "tty", Ty::Bool, false),
];
const POD_SPEC: &[Field] = &[
    (1, "volumes", Ty::Marker, true),
    (2, "containers", Ty::Msg(CONTAINER), true),
    (3, "restartPolicy", Ty::Str, false),
    (10, "nodeName", Ty::Str, false),
    (20, "initContainers", Ty::Msg(CONTAINER), true),
    (34, "ephemeralContainers", Ty::Marker, true),
    (7, "nodeSelector", Ty::MapStr, false),
    (11, "hostNetwork", Ty::Bool, false),
    (12, "hostPID", Ty::Bool, false),
    (13, "hostIPC", Ty::Bool, false),
    (18, "affinity", Ty::Marker, false),
];
const POD_TEMPLATE: &[Field] =
    &[(1, "metadata", Ty::Msg(OBJECT_META), false), (2, "spec", Ty::Msg(POD_SPEC), false)];
const DEPLOYMENT_SPEC: &[Field] = &[
    (1, "replicas", Ty::Int, false),
    (2, "selector", Ty::Msg(LABEL_SELECTOR), false),
    (3, "template", Ty::Msg(POD_TEMPLATE), false),
];
const DEPLOYMENT: &[Field] =
    &[(1, "metadata", Ty::Msg(OBJECT_META), false), (2, "spec", Ty::Msg(DEPLOYMENT_SPEC), false)];
const POD: &[Field] = &[(1, "metadata", Ty::Msg(OBJECT_META), false), (2, "spec", Ty::Msg(POD_SPEC), false)];
const SERVICE_PORT: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "protocol", Ty::Str, false),
    (3, "port", Ty::Int, false),
    (4, "targetPort", Ty::IntOrString, false),
    (5, "nodePort", Ty::Int, false),
];
const CLIENT_IP: &[Field] = &[(1, "timeoutSeconds", Ty::Int, false)];
const AFFINITY_CONFIG: &[Field] = &[(1, "clientIP", Ty::Msg(CLIENT_IP), false)];
const SERVICE_SPEC: &[Field] = &[
    (1, "ports", Ty::Msg(SERVICE_PORT), true),
    (2, "selector", Ty::MapStr, false),
    (3, "clusterIP", Ty::Str, false),
    (4, "type", Ty::Str, false),
    (7, "sessionAffinity", Ty::Str, false),
    (10, "externalName", Ty::Str, false),
    (14, "sessionAffinityConfig", Ty::Msg(AFFINITY_CONFIG), false),
];
/// `kubectl create configmap`.
const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::MapStr, false),
    (3, "binaryData", Ty::MapBytes, false),
];
/// `kubectl create secret generic|tls`.
const SECRET: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::MapBytes, false),
    (3, "type", Ty::Str, false),
    (4, "stringData", Ty::MapStr, false),
];
/// `kubectl create namespace`: only its metadata matters.
const NAMESPACE: &[Field] = &[(1, "metadata", Ty::Msg(OBJECT_META), false)];
const SERVICE: &[Field] =
    &[(1, "metadata", Ty::Msg(OBJECT_META), false), (2, "spec", Ty::Msg(SERVICE_SPEC), false)];
/// ServiceBackendPort: Go writes `number` even when the port is named (as 0).
const BACKEND_PORT: &[Field] = &[(1, "name", Ty::Str, false), (2, "number", Ty::Int, false)];
const SERVICE_BACKEND: &[Field] = &[(1, "name", Ty::Str, false), (2, "port", Ty::Msg(BACKEND_PORT), false)];
const INGRESS_BACKEND: &[Field] =
    &[(4, "service", Ty::Msg(SERVICE_BACKEND), false), (3, "resource", Ty::Marker, false)];
const INGRESS_PATH: &[Field] = &[
    (1, "path", Ty::Str, false),
    (3, "pathType", Ty::Str, false),
    (2, "backend", Ty::Msg(INGRESS_BACKEND), false),
];
const HTTP_RULE: &[Field] = &[(1, "paths", Ty::Msg(INGRESS_PATH), true)];
/// IngressRuleValue, embedded in the rule: its `http` is lifted.
const RULE_VALUE: &[Field] = &[(1, "http", Ty::Msg(HTTP_RULE), false)];
const INGRESS_RULE: &[Field] = &[(1, "host", Ty::Str, false), (2, "", Ty::Msg(RULE_VALUE), false)];
const INGRESS_TLS: &[Field] = &[(1, "hosts", Ty::Str, true), (2, "secretName", Ty::Str, false)];
const INGRESS_SPEC: &[Field] = &[
    (1, "defaultBackend", Ty::Msg(INGRESS_BACKEND), false),
    (2, "tls", Ty::Msg(INGRESS_TLS), true),
    (3, "rules", Ty::Msg(INGRESS_RULE), true),
    (4, "ingressClassName", Ty::Str, false),
];
/// `kubectl create ingress`.
const INGRESS: &[Field] =
    &[(1, "metadata", Ty::Msg(OBJECT_META), false), (2, "spec", Ty::Msg(INGRESS_SPEC), false)];

fn bad(what: &str) -> Status {
    Status::bad_request(format!("the protobuf body is malformed: {what}"))
}

/// A cursor over protobuf wire bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Status> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or_else(|| bad("a number is cut short"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a number is longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Status> {
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| bad("a field is longer than the body"))?;
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next field: its number, and its bytes (length-delimited) or number (varint).
    fn field(&mut self) -> Result<(u32, Wire<'a>), Status> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| bad("a field number is out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Bytes(self.take(8)?),
            2 => {
                let n = self.varint()?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Bytes(self.take(4)?),
            t => return Err(bad(&format!("wire type {t} is not one Kubernetes uses"))),
        };
        Ok((number, wire))
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn string(wire: &Wire<'_>) -> Result<String, Status> {
    match wire {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8")),
        Wire::Varint(_) => Err(bad("a string field holds a number")),
    }
}

fn message(bytes: &[u8], fields: &[Field], depth: usize) -> Result<Map<String, Value>, Status> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep"));
    }
    let mut out = Map::new();
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let (number, wire) = reader.field()?;
        let Some(&(_, name, ty, repeated)) = fields.iter().find(|f| f.0 == number) else { continue };
        let value = match (ty, &wire) {
            // Go writes unset strings as "": they mean absent.
            (Ty::Str, _) => match string(&wire)? {
                s if s.is_empty() && !repeated => continue,
                s => json!(s),
            },
            (Ty::Int, Wire::Varint(n)) => json!(*n as i64),
            (Ty::Bool, Wire::Varint(n)) => json!(*n != 0),
            (Ty::Msg(inner), Wire::Bytes(b)) => {
                let inner = message(b, inner, depth + 1)?;
                if name.is_empty() {
                    // An embedded message whose fields belong to this one.
                    out.extend(inner);
                    continue;
                }
                Value::Object(inner)
            }
            (Ty::Bytes, Wire::Bytes(b)) => {
                json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b))
            }
            (Ty::MapStr | Ty::MapQty | Ty::MapBytes, Wire::Bytes(b)) => {
                let value_ty = match ty {
                    Ty::MapStr => Ty::Str,
                    Ty::MapBytes => Ty::Bytes,
                    _ => Ty::Msg(QUANTITY),
                };
                let e = message(b, &[(1, "k", Ty::Str, false), (2, "v", value_ty, false)], depth + 1)?;
                let value = match e.get("v") {
                    Some(Value::Object(quantity)) => quantity.get("string").cloned().unwrap_or(json!("")),
                    Some(v) => v.clone(),
                    None => json!(""),
                };
                let key = e.get("k").and_then(Value::as_str).unwrap_or_default().to_string();
                match out.entry(name).or_insert_with(|| json!({})) {
                    Value::Object(map) => map.insert(key, value),
                    _ => return Err(bad(&format!("field {name} is given twice"))),
                };
                continue;
            }
            (Ty::IntOrString, Wire::Bytes(b)) => {
                let v = message(
                    b,
                    &[(1, "type", Ty::Int, false), (2, "int", Ty::Int, false), (3, "str", Ty::Str, false)],
                    depth + 1,
                )?;
                match v.get("type").and_then(Value::as_i64).unwrap_or(0) {
                    1 => v.get("str").cloned().unwrap_or(json!("")),
                    _ => v.get("int").cloned().unwrap_or(json!(0)),
                }
            }
            (Ty::Marker, _) => json!({}),
            _ => return Err(bad(&format!("field {name} has the wrong wire type"))),
        };
        if repeated {
            match out.entry(name).or_insert_with(|| json!([])) {
                Value::Array(items) => items.push(value),
                _ => return Err(bad(&format!("field {name} is given twice"))),
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Ok(out)
}

/// A protobuf body as the JSON object it stands for (Pod, Deployment,
/// Service); other kinds are refused with 415.
pub fn decode(body: &[u8]) -> Result<Value, Status> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| bad("it does not start with the k8s envelope"))?;
    let unknown = message(rest, UNKNOWN, 0)?;
    let type_meta = unknown.get("typeMeta").cloned().unwrap_or(json!({}));
    let (api_version, kind) =
        (type_meta["apiVersion"].as_str().unwrap_or(""), type_meta["kind"].as_str().unwrap_or(""));
    let schema = match (api_version, kind) {
        ("v1", "Pod") => POD,
        ("v1", "Service") => SERVICE,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("networking.k8s.io/v1", "Ingress") => INGRESS,
        _ => {
            return Err(Status::unsupported_media(format!(
                "podnet reads protobuf bodies of Pods, Services, Deployments, Namespaces, ConfigMaps, Secrets and Ingresses, not {api_version} {kind}: send JSON"
            )));
        }
    };
    // The object's bytes are the envelope's field 2.
    let mut reader = Reader { bytes: rest };
    let mut raw: &[u8] = &[];
    while !reader.bytes.is_empty() {
        if let (2, Wire::Bytes(b)) = reader.field()? {
            raw = b;
        }
    }
    let mut object = message(raw, schema, 1)?;
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes(number: u32, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3 | 2, &mut out);
        varint(b.len() as u64, &mut out);
        out.extend_from_slice(b);
        out
    }

    fn int(number: u32, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3, &mut out);
        varint(n, &mut out);
        out
    }

    fn entry(number: u32, k: &str, v: &str) -> Vec<u8> {
        bytes(number, &[bytes(1, k.as_bytes()), bytes(2, v.as_bytes())].concat())
    }

    /// What `kubectl create deployment web --image=busybox --port=80 -- sleep 1` sends.
    fn deployment() -> Vec<u8> {
        let meta = [bytes(1, b"web"), entry(11, "app", "web")].concat();
        let port = int(3, 80);
        let container = [
            bytes(1, b"busybox"),
            bytes(2, b"busybox"),
            bytes(3, b"sleep"),
            bytes(3, b"1"),
            bytes(6, &port),
            bytes(8, &[]),
        ]
        .concat();
        let template = [bytes(1, &entry(11, "app", "web")), bytes(2, &bytes(2, &container))].concat();
        let spec =
            [int(1, 3), bytes(2, &entry(1, "app", "web")), bytes(3, &template), bytes(4, &[])].concat();
        let object = [bytes(1, &meta), bytes(2, &spec), bytes(3, &[])].concat();
        let type_meta = [bytes(1, b"apps/v1"), bytes(2, b"Deployment")].concat();
        [MAGIC.to_vec(), bytes(1, &type_meta), bytes(2, &object), bytes(3, b""), bytes(4, b"")].concat()
    }

    #[test]
    fn a_protobuf_deployment_reads_as_its_json() {
        let v = decode(&deployment()).unwrap();
        assert_eq!(v["kind"], "Deployment");
        assert_eq!(v["metadata"]["name"], "web");
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "web");
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["sleep", "1"]));
        assert_eq!(c["ports"][0]["containerPort"], 80);
        let spec = super::super::decode::deployment(&v, "default").unwrap();
        assert_eq!((spec.replicas, spec.template.image.map(|i| i.command.len())), (3, Some(2)));
    }

    /// A container's valueFrom and envFrom, as client-go writes them.
    #[test]
    fn protobuf_env_references_read_as_their_json() {
        let selector =
            |name: &[u8], key: &[u8]| [bytes(1, &bytes(1, name)), bytes(2, key), int(3, 1)].concat();
        let env = [bytes(1, b"MODE"), bytes(3, &bytes(3, &selector(b"app", b"mode")))].concat();
        let from = [bytes(1, b"APP_"), bytes(3, &bytes(1, &bytes(1, b"db")))].concat();
        let container = [bytes(1, b"c"), bytes(2, b"busybox"), bytes(7, &env), bytes(19, &from)].concat();
        let pod = [bytes(1, &bytes(1, b"p")), bytes(2, &bytes(2, &container))].concat();
        let body = [MAGIC.to_vec(), bytes(1, &[bytes(1, b"v1"), bytes(2, b"Pod")].concat()), bytes(2, &pod)]
            .concat();
        let v = decode(&body).unwrap();
        let c = &v["spec"]["containers"][0];
        assert_eq!(
            c["env"][0]["valueFrom"],
            json!({ "configMapKeyRef": { "name": "app", "key": "mode", "optional": true } })
        );
        assert_eq!(c["envFrom"][0], json!({ "prefix": "APP_", "secretRef": { "name": "db" } }));
        let spec = super::super::decode::pod(&v, "default").unwrap();
        assert_eq!(spec.template.image.unwrap().env_refs.len(), 2);
    }

    /// What `kubectl create configmap app --from-literal=mode=fast
    /// --from-file=blob` sends (blob not UTF-8), and `create secret generic`.
    #[test]
    fn a_protobuf_configmap_or_secret_reads_as_its_json() {
        let envelope = |kind: &[u8], object: Vec<u8>| {
            [MAGIC.to_vec(), bytes(1, &[bytes(1, b"v1"), bytes(2, kind)].concat()), bytes(2, &object)]
                .concat()
        };
        let blob = bytes(3, &[bytes(1, b"blob"), bytes(2, &[0, 0xff])].concat());
        let cm = [bytes(1, &bytes(1, b"app")), entry(2, "mode", "fast"), blob].concat();
        let v = decode(&envelope(b"ConfigMap", cm)).unwrap();
        let spec = super::super::configmaps::decode(&v, "default").unwrap();
        assert_eq!((spec.data["mode"].as_str(), spec.binary_data["blob"].clone()), ("fast", vec![0, 0xff]));
        let secret =
            [bytes(1, &bytes(1, b"db")), entry(2, "password", "hunter2"), bytes(3, b"Opaque")].concat();
        let v = decode(&envelope(b"Secret", secret)).unwrap();
        let spec = super::super::ingresses::decode_secret(&v, "default").unwrap();
        assert_eq!(spec.data["password"], b"hunter2");
    }

    /// What `kubectl create ingress shop --class podnet --rule
    /// "shop.example/api*=api:http,tls=shop-tls" --default-backend web:80`
    /// sends: a named port comes with `number` 0, as Go writes it.
    #[test]
    fn a_protobuf_ingress_reads_as_its_json() {
        let port = |name: &[u8], number: u64| [bytes(1, name), int(2, number)].concat();
        let backend =
            |service: &[u8], port: Vec<u8>| bytes(4, &[bytes(1, service), bytes(2, &port)].concat());
        let path =
            [bytes(1, b"/api"), bytes(3, b"Prefix"), bytes(2, &backend(b"api", port(b"http", 0)))].concat();
        let rule = [bytes(1, b"shop.example"), bytes(2, &bytes(1, &bytes(1, &path)))].concat();
        let tls = [bytes(1, b"shop.example"), bytes(2, b"shop-tls")].concat();
        let spec =
            [bytes(1, &backend(b"web", port(b"", 80))), bytes(2, &tls), bytes(3, &rule), bytes(4, b"podnet")]
                .concat();
        let ingress = [bytes(1, &bytes(1, b"shop")), bytes(2, &spec)].concat();
        let envelope = [
            MAGIC.to_vec(),
            bytes(1, &[bytes(1, b"networking.k8s.io/v1"), bytes(2, b"Ingress")].concat()),
            bytes(2, &ingress),
        ]
        .concat();
        let v = decode(&envelope).unwrap();
        let spec = super::super::ingresses::decode_ingress(&v, "default").unwrap();
        assert_eq!(spec.class.as_deref(), Some("podnet"));
        assert_eq!(spec.tls[0].secret_name, "shop-tls");
        let rule = &spec.rules[0];
        assert_eq!((rule.host.as_deref(), rule.paths[0].path.as_str()), (Some("shop.example"), "/api"));
        assert_eq!(rule.paths[0].backend.port, crate::model::ingress::BackendPort::Name("http".into()));
        assert_eq!(spec.default_backend.unwrap().port, crate::model::ingress::BackendPort::Number(80));
    }

    #[test]
    fn cut_or_foreign_bodies_are_refused_not_panicked_on() {
        let whole = deployment();
        for cut in 0..whole.len() {
            let _ = decode(&whole[..cut]);
        }
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        let job = [MAGIC.to_vec(), bytes(1, &[bytes(1, b"batch/v1"), bytes(2, b"Job")].concat())].concat();
        assert_eq!(decode(&job).unwrap_err().code, 415);
        // A length past the end.
        let long = [MAGIC.to_vec(), vec![0x0a, 0xff, 0xff, 0xff, 0x0f]].concat();
        assert_eq!(decode(&long).unwrap_err().code, 400);
    }
}
