//! The plugin side: the CNI_* environment and the network config on stdin
//! in, one request to the node agent, the result (or the spec's error
//! object) on stdout out. VERSION needs no agent; STATUS answers 50 while
//! the agent is down; everything else that finds no agent is "try again
//! later" (11), so the runtime retries instead of giving up on the
//! container.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use runtime::api::{Client, ClientError, CniAdd, DEFAULT_SOCKET, Request, Response};
use runtime::model::cni::{CniAttachment, check_ifname};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SUPPORTED_VERSIONS;
use super::result::{CniError, add_result, code};

/// Most bytes of network config taken from stdin (prevResults of long
/// chains included); a runtime never sends this much.
const MAX_CONFIG: u64 = 1 << 20;
/// Most bytes of CNI_ARGS.
const MAX_ARGS: usize = 16 << 10;
/// Most attachments a GC may list.
const MAX_VALID: usize = 1 << 16;
/// How long the agent may take: an ADD waits for the node to plug the
/// container in, never for a pull.
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The network config fields podnet reads; the rest (`args`,
/// `runtimeConfig`, `ipam`...) is the runtime's and ignored.
#[derive(Deserialize)]
struct NetConf {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    /// The agent's control socket (`podnet cni config` writes it).
    socket: Option<PathBuf>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<GcAttachment>>,
    /// The name an earlier draft of the spec used (libcni sends both).
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<GcAttachment>>,
}

#[derive(Deserialize)]
struct GcAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// Runs the plugin for the CNI_COMMAND in the environment.
pub(crate) fn run() -> ExitCode {
    let mut version = SUPPORTED_VERSIONS[2].to_string();
    match serve(&mut version) {
        Ok(output) => {
            if let Some(output) = output {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", e.to_json(&version));
            // Non-zero as the spec asks; the code itself, so a person
            // running the plugin by hand sees it too.
            ExitCode::from(u8::try_from(e.code).unwrap_or(1))
        }
    }
}

fn serve(version: &mut String) -> Result<Option<Value>, CniError> {
    let command = env("CNI_COMMAND")?;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_CONFIG + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::new(code::IO, format!("cannot read the network config on stdin: {e}")))?;
    if input.len() as u64 > MAX_CONFIG {
        return Err(CniError::new(code::DECODE, format!("the network config is over {MAX_CONFIG} bytes")));
    }
    if command == "VERSION" {
        // The runtime's own version only: a VERSION config has no name.
        let asked = serde_json::from_slice::<Value>(&input)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(String::from));
        if let Some(asked) = asked.filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str())) {
            *version = asked;
        }
        return Ok(Some(json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })));
    }
    let conf: NetConf = serde_json::from_slice(&input).map_err(|e| {
        CniError::new(code::DECODE, format!("the network config on stdin is not CNI JSON: {e}"))
    })?;
    let asked = conf
        .cni_version
        .clone()
        .ok_or_else(|| CniError::new(code::CONFIG, "the network config has no cniVersion"))?;
    if !SUPPORTED_VERSIONS.contains(&asked.as_str()) {
        return Err(CniError::new(
            code::VERSION,
            format!("cniVersion {asked} is not supported: use one of {}", SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    *version = asked;
    let network = conf
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CniError::new(code::CONFIG, "the network config has no name"))?;
    if matches!(command.as_str(), "STATUS" | "GC") && version.as_str() < "1.1.0" {
        return Err(CniError::new(
            code::VERSION,
            format!("{command} needs cniVersion 1.1.0, the config has {version}"),
        ));
    }
    let socket = conf
        .socket
        .clone()
        .or_else(|| std::env::var_os("PODNET_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let status = command == "STATUS";
    let ask = |request: Request| {
        call(&socket, request).map_err(|e| match status {
            true => CniError::new(code::NOT_AVAILABLE, e.to_string()),
            false => agent_error(e),
        })
    };
    match command.as_str() {
        "ADD" => {
            let attachment = CniAttachment {
                container_id: env("CNI_CONTAINERID")?,
                ifname: env("CNI_IFNAME")?,
                netns: PathBuf::from(env("CNI_NETNS")?),
                network,
            };
            attachment.check().map_err(|e| CniError::new(code::ENV, e.to_string()))?;
            let args = cni_args()?;
            let (name, namespace) = (arg(&args, "K8S_POD_NAME"), arg(&args, "K8S_POD_NAMESPACE"));
            let (ifname, netns) = (attachment.ifname.clone(), attachment.netns.display().to_string());
            match ask(Request::CniAdd(CniAdd { attachment, name, namespace }))? {
                Response::CniAttached(attached) => Ok(Some(add_result(version, &ifname, &netns, &attached))),
                _ => Err(unexpected()),
            }
        }
        "DEL" => {
            let (container_id, ifname) = identity()?;
            ask(Request::CniDel { container_id, ifname })?;
            Ok(None)
        }
        "CHECK" => {
            let (container_id, ifname) = identity()?;
            env("CNI_NETNS")?;
            let Response::Pods(pods) = ask(Request::CniCheck { container_id: container_id.clone(), ifname })?
            else {
                return Err(unexpected());
            };
            let pod = pods.first().ok_or_else(|| {
                CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!("podnet has no attachment of container {container_id}"),
                )
            })?;
            check_prev_result(conf.prev_result.as_ref(), pod.status.pod_ip)?;
            Ok(None)
        }
        "GC" => {
            let valid: Vec<(String, String)> = conf
                .valid_attachments
                .or(conf.attachments)
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.container_id, a.ifname))
                .collect();
            if valid.len() > MAX_VALID {
                return Err(CniError::new(code::CONFIG, format!("GC lists over {MAX_VALID} attachments")));
            }
            ask(Request::CniGc { network, valid })?;
            Ok(None)
        }
        "STATUS" => {
            ask(Request::CniStatus)?;
            Ok(None)
        }
        other => Err(CniError::new(
            code::ENV,
            format!("CNI_COMMAND `{other}` is unknown: use ADD, DEL, CHECK, GC, STATUS or VERSION"),
        )),
    }
}

/// A required CNI_* variable.
fn env(name: &str) -> Result<String, CniError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(CniError::new(code::ENV, format!("{name} is not set: the runtime must set it"))),
    }
}

/// CNI_CONTAINERID and CNI_IFNAME, checked.
fn identity() -> Result<(String, String), CniError> {
    let container_id = env("CNI_CONTAINERID")?;
    let ifname = env("CNI_IFNAME")?;
    let probe = CniAttachment {
        container_id: container_id.clone(),
        ifname: ifname.clone(),
        netns: PathBuf::from("/"),
        network: String::new(),
    };
    probe
        .check()
        .and_then(|()| check_ifname(&ifname))
        .map_err(|e| CniError::new(code::ENV, e.to_string()))?;
    Ok((container_id, ifname))
}

/// CNI_ARGS: `K=V;K=V` (podman and containerd send `IgnoreUnknown=1`
/// with the K8S_ keys; podnet takes the keys it knows and ignores the rest).
fn cni_args() -> Result<Vec<(String, String)>, CniError> {
    let text = std::env::var("CNI_ARGS").unwrap_or_default();
    if text.len() > MAX_ARGS {
        return Err(CniError::new(code::ENV, format!("CNI_ARGS is over {MAX_ARGS} bytes")));
    }
    text.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CniError::new(code::ENV, format!("CNI_ARGS item `{pair}` is not KEY=VALUE")))
        })
        .collect()
}

fn arg(args: &[(String, String)], key: &str) -> Option<String> {
    args.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

/// CHECK: the address ADD reported is the attachment's still.
fn check_prev_result(prev: Option<&Value>, ip: Option<std::net::IpAddr>) -> Result<(), CniError> {
    let Some(address) = prev.and_then(|p| p["ips"][0]["address"].as_str()) else { return Ok(()) };
    let reported = address.split('/').next().unwrap_or_default();
    match ip.map(|ip| ip.to_string()) {
        Some(ip) if ip == reported => Ok(()),
        other => Err(CniError::new(
            code::REFUSED,
            format!(
                "prevResult has address {reported}, the attachment has {}",
                other.unwrap_or("none".into())
            ),
        )),
    }
}

/// One request to the agent, bounded in time.
fn call(socket: &std::path::Path, request: Request) -> Result<Response, ClientError> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ClientError::Io)?;
    runtime.block_on(async {
        let exchange = async {
            let mut client = Client::connect(socket).await?;
            client.call(&request).await
        };
        tokio::time::timeout(AGENT_TIMEOUT, exchange).await.unwrap_or_else(|_| {
            Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the agent did not answer within {} s", AGENT_TIMEOUT.as_secs()),
            )))
        })
    })
}

/// An agent that is not there (or broke off) is transient; a refusal is
/// the agent's, in its words.
fn agent_error(e: ClientError) -> CniError {
    match e {
        ClientError::NoAgent(..) | ClientError::Io(_) => CniError::new(code::TRY_AGAIN, e.to_string()),
        ClientError::Agent(_) | ClientError::Version { .. } => CniError::new(code::REFUSED, e.to_string()),
    }
}

fn unexpected() -> CniError {
    CniError::new(
        code::REFUSED,
        "the agent sent an unexpected answer: use the podnet binary that matches the agent",
    )
}
