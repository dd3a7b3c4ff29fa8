//! The `podnet` command: `podnet node up` runs the agent; every other verb
//! talks to a running agent over its control socket.

// Unsafe code lives in `sys`, behind safe wrappers.
#![deny(unsafe_code)]

mod apply;
mod args;
mod capture;
mod cni;
mod configmap;
mod demo;
mod describe;
mod error;
mod exec;
mod expose;
mod image;
mod ingress;
mod kube;
mod label;
#[allow(unsafe_code)]
mod sys;
mod table;
mod terminal;

use std::path::Path;
use std::process::ExitCode;

use args::{
    Cli, CniCommand, Command, ConfigCommand, CreateCommand, CreateSecretCommand, CreateServiceCommand,
    GetArgs, Kind, NodeCommand, NodeUpArgs, Output,
};
use clap::Parser;
use error::CliError;
use runtime::api::{Client, Request, Response};
use runtime::config::NodeConfig;
use runtime::model::{ClusterIpRequest, DeploymentSpec, PodSpec, ServiceSpec, SessionAffinity};

fn main() -> ExitCode {
    // Linked into a CNI bin dir, podnet is the plugin: runtimes call it
    // with CNI_COMMAND set and no arguments.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::plugin::run();
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Node { command: NodeCommand::Up(_) }) {
        // A CLI whose reader went away (`podnet get pods | head -1`) ends
        // quietly like any Unix tool, instead of panicking on EPIPE. The
        // agent keeps Rust's default of ignoring SIGPIPE for its sockets.
        let _ = sys::default_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// The one place an error becomes text for the user.
fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

async fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    let socket = cli.socket.as_path();
    if let Some(path) = &cli.kubeconfig {
        let (config, token) = runtime::cluster::token::ClientConfig::load(path)?;
        let admin = runtime::cluster::client::Caller::Admin(config.admin);
        let _ = REMOTE.set((config.server, token, admin));
    }
    match cli.command {
        Command::Node { command: NodeCommand::Up(args) } => node_up(*args, socket).await,
        Command::Node { command: NodeCommand::Stats { output } } => {
            let Response::Stats(report) = call(socket, Request::NodeStats).await? else {
                return unexpected();
            };
            match output {
                Some(Output::Json) => {
                    println!("{}", serde_json::to_string_pretty(&report)?)
                }
                Some(Output::Yaml) => {
                    print!("{}", serde_yaml_ng::to_string(&report)?)
                }
                _ => print!("{}", table::stats(&report)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Image { command } => image::run(socket, command).await,
        Command::Config { command: ConfigCommand::Check { file } } => {
            NodeConfig::load(&file)?;
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => demo::run().await,
        Command::Label { kind: args::LabelKind::Pod, name, labels, overwrite, ns } => {
            println!("{}", label::run(socket, &ns.namespace, &name, &labels, overwrite).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cni { command: CniCommand::Config { name } } => {
            println!("{}", serde_json::to_string_pretty(&cni::install::conflist(&name, socket))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cni { command: CniCommand::Install { bin_dir, conf_dir, name } } => {
            let bin_dir = bin_dir.unwrap_or_else(cni::install::default_bin_dir);
            println!("{}", cni::install::install(&bin_dir, &conf_dir, &name, socket)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { file, ns } => apply::run(socket, &file, &ns.namespace).await,
        Command::Exec { pod, ns, command, tty, .. } => {
            exec::run(socket, &ns.namespace, &pod, &command, tty).await
        }
        Command::Run(args) => {
            let (command, image) = args.pod.workload(args.command);
            let resources = args.pod.resources();
            let spec = PodSpec {
                name: args.name.clone(),
                namespace: args.ns.namespace,
                labels: run_labels(&args.name, parse_labels(&args.labels)?),
                template: runtime::model::PodTemplate {
                    command,
                    security: args.pod.security(),
                    ports: args.pod.ports,
                    readiness: args.pod.readiness,
                    resources,
                    host_ports: args.pod.host_ports,
                    image,
                    container: None,
                },
                restart_policy: args.restart,
                owner: None,
                node_name: args.node,
                annotations: Default::default(),
                attachment: None,
            };
            let Response::Pod(pod) = call(socket, Request::RunPod(spec)).await? else {
                return unexpected();
            };
            println!("pod/{} created", pod.spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Create {
            command: CreateCommand::Deployment { name, ns, replicas, labels, pod, command },
        } => {
            let (command, image) = pod.workload(command);
            let resources = pod.resources();
            let spec = DeploymentSpec {
                name,
                namespace: ns.namespace,
                replicas,
                labels: parse_labels(&labels)?,
                template: runtime::model::PodTemplate {
                    command,
                    security: pod.security(),
                    ports: pod.ports,
                    readiness: pod.readiness,
                    resources,
                    host_ports: pod.host_ports,
                    image,
                    ..Default::default()
                },
                ..Default::default()
            };
            let Response::Deployment(d) = call(socket, Request::CreateDeployment(spec)).await? else {
                return unexpected();
            };
            println!("deployment.apps/{} created", d.spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Scale { kind, name, replicas, ns } => {
            if kind != Kind::Deployment {
                return Err(
                    "only deployments can be scaled: `podnet scale deployment NAME --replicas N`".into()
                );
            }
            call(socket, Request::ScaleDeployment { namespace: ns.namespace, name: name.clone(), replicas })
                .await?;
            println!("deployment.apps/{name} scaled");
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete { kind, name, ns } => {
            let (request, what) = match kind {
                Kind::Pod => (Request::DeletePod { namespace: ns.namespace, name: name.clone() }, "pod"),
                Kind::Deployment => (
                    Request::DeleteDeployment { namespace: ns.namespace, name: name.clone() },
                    "deployment.apps",
                ),
                Kind::Service => {
                    (Request::DeleteService { namespace: ns.namespace, name: name.clone() }, "service")
                }
                Kind::Node => (Request::DeleteNode { name: name.clone() }, "node"),
                Kind::NetworkPolicy => (
                    Request::DeleteNetworkPolicy { namespace: ns.namespace, name: name.clone() },
                    "networkpolicy.networking.k8s.io",
                ),
                Kind::Endpoints => {
                    return Err("endpoints follow their service: delete the service instead".into());
                }
                Kind::Ingress => (
                    Request::DeleteIngress { namespace: ns.namespace, name: name.clone() },
                    "ingress.networking.k8s.io",
                ),
                Kind::Secret => {
                    (Request::DeleteSecret { namespace: ns.namespace, name: name.clone() }, "secret")
                }
                Kind::Configmap => {
                    (Request::DeleteConfigMap { namespace: ns.namespace, name: name.clone() }, "configmap")
                }
                Kind::Ingressclass => {
                    return Err("the podnet IngressClass is built in and cannot be deleted".into());
                }
            };
            call(socket, request).await?;
            println!("{what} \"{name}\" deleted");
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { kind, name, ns } => match kind {
            Kind::Pod => describe::run(socket, &ns.namespace, &name).await,
            Kind::NetworkPolicy => describe::network_policy(socket, &ns.namespace, &name).await,
            Kind::Ingress => ingress::describe(socket, &ns.namespace, &name).await,
            Kind::Configmap => configmap::describe(socket, &ns.namespace, &name).await,
            _ => Err("only pods, networkpolicies, ingresses and configmaps can be described: podnet describe pod|networkpolicy|ingress|configmap NAME".into()),
        },
        Command::Create { command: CreateCommand::Configmap { name, ns, literals, files } } => {
            let spec = configmap::spec(name, ns.namespace, &literals, &files)?;
            let Response::ConfigMap(made) = call(socket, Request::CreateConfigMap(spec)).await? else {
                return unexpected();
            };
            println!("configmap/{} created", made.spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Create { command: CreateCommand::Secret { command } } => {
            let spec = match command {
                CreateSecretCommand::Tls { name, ns, cert, key } => {
                    ingress::tls_secret(name, ns.namespace, &cert, &key)?
                }
                CreateSecretCommand::Generic { name, ns, literals, files } => {
                    ingress::generic_secret(name, ns.namespace, &literals, &files)?
                }
            };
            let Response::Secret(secret) = call(socket, Request::CreateSecret(spec)).await? else {
                return unexpected();
            };
            println!("secret/{} created", secret.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Create {
            command: CreateCommand::Ingress { name, ns, class, rules, default_backend, annotations },
        } => {
            // Parsed here, not by clap, so a mistake is one line naming the fix.
            let rules = rules.iter().map(|r| r.parse()).collect::<Result<Vec<ingress::RuleArg>, _>>()?;
            let default_backend = default_backend
                .map(|b| b.parse().map_err(|e| format!("--default-backend: {e}")))
                .transpose()?;
            let spec =
                ingress::ingress_spec(name, ns.namespace, class, rules, default_backend, &annotations)?;
            let Response::Ingress(created) = call(socket, Request::CreateIngress(spec)).await? else {
                return unexpected();
            };
            println!("ingress.networking.k8s.io/{} created", created.spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { pod, ns } => {
            let Response::Logs(bytes) =
                call(socket, Request::Logs { namespace: ns.namespace, name: pod }).await?
            else {
                return unexpected();
            };
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => get(socket, args).await,
        Command::Resolve { name, qtype, ns } => {
            let number = netstack::dns::record_type(&qtype).ok_or_else(|| {
                format!("record type `{qtype}` is not one of A, AAAA, SRV, PTR, TXT, CNAME, SOA, ANY")
            })?;
            // A PTR question for an address is asked under in-addr.arpa.
            let name = match (number, name.parse::<std::net::Ipv4Addr>()) {
                (12, Ok(ip)) => {
                    let [a, b, c, d] = ip.octets();
                    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
                }
                _ => name,
            };
            let request = Request::Resolve { name, qtype: number, namespace: ns.namespace };
            let Response::Resolved { name, response } = call(socket, request).await? else {
                return unexpected();
            };
            let described =
                netstack::dns::describe(&response).ok_or("the agent sent a malformed DNS answer")?;
            println!(
                ";; {name} {qtype}: {}{}",
                described.rcode,
                if described.truncated { " (truncated)" } else { "" }
            );
            for record in described.answers.iter().chain(&described.additional) {
                println!("{record}");
            }
            Ok(if described.rcode == "NOERROR" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Create {
            command:
                CreateCommand::Service { command: CreateServiceCommand::Externalname { name, ns, external_name } },
        } => {
            let spec = ServiceSpec {
                name,
                namespace: ns.namespace,
                cluster_ip: ClusterIpRequest::None,
                ports: Vec::new(),
                selector: Default::default(),
                session_affinity: SessionAffinity::None,
                external_name: Some(external_name),
                service_type: Default::default(),
                labels: Default::default(),
                annotations: Default::default(),
            };
            let Response::Service(service) = call(socket, Request::CreateService(spec)).await? else {
                return unexpected();
            };
            println!("service/{} created", service.spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Capture { pod, ns, write, count } => {
            capture::run(socket, &ns.namespace, &pod, write, count).await
        }
        Command::Expose(args) => {
            println!("{}", expose::run(socket, args).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Patch { kind, name, ns, session_affinity, session_affinity_timeout } => {
            if kind != Kind::Service {
                return Err("only a service's session affinity can be patched: `podnet patch svc NAME --session-affinity ClientIP`".into());
            }
            let affinity = expose::affinity(session_affinity, session_affinity_timeout)?;
            call(
                socket,
                Request::SetSessionAffinity { namespace: ns.namespace, name: name.clone(), affinity },
            )
            .await?;
            println!("service/{name} patched");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn node_up(args: NodeUpArgs, socket: &Path) -> Result<ExitCode, CliError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "podnet node up must run as root: it creates network namespaces and TAP devices (try sudo)"
                .into(),
        );
    }
    let config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    let node_name = match args.name {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .map_err(|e| CliError::Message(format!("cannot read the host name ({e}): pass --name")))?
            .to_string_lossy()
            .to_lowercase(),
    };
    let node_ip = match args.node_ip {
        Some(ip) => Some(runtime::model::address::ipv4_only("--node-ip", ip).map_err(|e| e.to_string())?),
        None => None,
    };
    let role = match (&args.server, args.cluster_init) {
        _ if args.kubernetes.is_some() => {
            runtime::agent::Role::Kubernetes { kubeconfig: args.kubernetes.clone().expect("checked") }
        }
        (Some(server), _) => {
            let server = match server.parse::<std::net::SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => std::net::SocketAddr::from((
                    server.parse::<std::net::Ipv4Addr>().map_err(|_| {
                        format!(
                            "--server `{server}` is not an IPv4 address or IP:PORT: give the server's address"
                        )
                    })?,
                    args.cluster_port,
                )),
            };
            let token_file = args.token_file.clone().ok_or("--server needs --token-file")?;
            runtime::agent::Role::Member { server, token_file, address: node_ip }
        }
        (None, true) => runtime::agent::Role::Server {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], args.cluster_port)),
            address: node_ip,
        },
        (None, false) => runtime::agent::Role::Standalone,
    };
    // A file given by name must exist; the default path may not.
    let registries = match &args.registries {
        Some(path) => runtime::image::Registries::load(path, false),
        None => runtime::image::Registries::load(Path::new(runtime::image::registries::DEFAULT_PATH), true),
    }
    .map_err(|e| CliError::Message(e.to_string()))?
    .unwrap_or_default();
    // RUST_LOG is one level (error, warn, info, debug, trace) for the agent.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).init();
    runtime::agent::run(runtime::agent::AgentOptions {
        config,
        node_name,
        data_dir: args.data_dir,
        socket: socket.to_path_buf(),
        metrics_addr: args.metrics_addr,
        role,
        registries,
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn get(socket: &Path, args: GetArgs) -> Result<ExitCode, CliError> {
    let namespace = (!args.all_namespaces).then(|| args.namespace.clone());
    let wide = args.output == Some(Output::Wide);
    let (objects, text) = match args.kind {
        Kind::Pod => {
            let Response::Pods(mut pods) = call(socket, Request::GetPods { namespace }).await? else {
                return unexpected();
            };
            keep_named(&mut pods, args.name.as_deref(), |p| &p.spec.name, "pod", &args.namespace)?;
            (pods.iter().map(kube::pod).collect::<Vec<_>>(), table::pods(&pods, wide, args.all_namespaces))
        }
        Kind::Deployment => {
            let Response::Deployments(mut list) = call(socket, Request::GetDeployments { namespace }).await?
            else {
                return unexpected();
            };
            keep_named(&mut list, args.name.as_deref(), |d| &d.spec.name, "deployment", &args.namespace)?;
            (
                list.iter().map(kube::deployment).collect(),
                table::deployments(&list, wide, args.all_namespaces),
            )
        }
        Kind::Service => {
            let Response::Services(list) = call(socket, Request::GetServices { namespace }).await? else {
                return unexpected();
            };
            let mut list: Vec<runtime::model::Service> =
                list.into_iter().map(std::sync::Arc::unwrap_or_clone).collect();
            keep_named(&mut list, args.name.as_deref(), |s| &s.spec.name, "service", &args.namespace)?;
            (list.iter().map(kube::service).collect(), table::services(&list, wide, args.all_namespaces))
        }
        Kind::Endpoints => {
            let Response::Endpoints(mut list) = call(socket, Request::GetEndpoints { namespace }).await?
            else {
                return unexpected();
            };
            keep_named(&mut list, args.name.as_deref(), |e| &e.name, "endpoints", &args.namespace)?;
            (list.iter().map(kube::endpoints).collect(), table::endpoints(&list, args.all_namespaces))
        }
        Kind::Node => {
            let Response::Nodes(mut list) = call(socket, Request::GetNodes).await? else {
                return unexpected();
            };
            if let Some(name) = &args.name {
                list.retain(|n| &n.name == name);
                if list.is_empty() {
                    return Err(format!("node {name} not found").into());
                }
            }
            (list.iter().map(kube::node).collect(), table::nodes(&list, wide))
        }
        Kind::NetworkPolicy => {
            let Response::NetworkPolicies(mut list) =
                call(socket, Request::GetNetworkPolicies { namespace }).await?
            else {
                return unexpected();
            };
            keep_named(&mut list, args.name.as_deref(), |p| &p.spec.name, "networkpolicy", &args.namespace)?;
            (
                list.iter().map(kube::network_policy).collect(),
                table::network_policies(&list, args.all_namespaces),
            )
        }
        Kind::Ingress => {
            ingress::get_ingresses(
                socket,
                namespace,
                args.name.as_deref(),
                &args.namespace,
                args.all_namespaces,
            )
            .await?
        }
        Kind::Secret => {
            ingress::get_secrets(
                socket,
                namespace,
                args.name.as_deref(),
                &args.namespace,
                args.all_namespaces,
            )
            .await?
        }
        Kind::Configmap => {
            configmap::get(socket, namespace, args.name.as_deref(), &args.namespace, args.all_namespaces)
                .await?
        }
        Kind::Ingressclass => (vec![runtime::kube::ingresses::ingress_class()], ingress::class_table()),
    };
    let value = match (args.name.is_some(), objects.len()) {
        (true, 1) => objects.into_iter().next().expect("one object"),
        _ => kube::list(objects),
    };
    match args.output {
        Some(Output::Json) => {
            println!("{}", serde_json::to_string_pretty(&value)?)
        }
        Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(&value)?),
        _ if text.lines().count() <= 1 => {
            let ns = args.namespace;
            eprintln!(
                "{}",
                if args.all_namespaces {
                    "No resources found".into()
                } else {
                    format!("No resources found in {ns} namespace.")
                }
            );
        }
        _ => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends one request to the agent.
pub async fn call(socket: &Path, request: Request) -> Result<Response, CliError> {
    if let Some((server, token, admin)) = REMOTE.get() {
        return Ok(runtime::cluster::client::call(*server, token, admin, &request).await?);
    }
    let mut client = Client::connect(socket).await?;
    Ok(client.call(&request).await?)
}

/// The cluster server a `--kubeconfig` points at, if one was given.
static REMOTE: std::sync::OnceLock<Remote> = std::sync::OnceLock::new();

/// A cluster server's address, its join token and the admin's credential.
type Remote = (std::net::SocketAddr, runtime::cluster::token::Token, runtime::cluster::client::Caller);

pub(crate) fn unexpected<T>() -> Result<T, CliError> {
    Err(CliError::Unexpected)
}

/// `podnet run` labels its pod run=NAME unless given labels, as kubectl run does.
fn run_labels(name: &str, labels: runtime::model::Labels) -> runtime::model::Labels {
    if labels.is_empty() { [("run".to_string(), name.to_string())].into() } else { labels }
}

fn parse_labels(items: &[String]) -> Result<runtime::model::Labels, CliError> {
    items
        .iter()
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Message(format!("label `{item}` is not key=value")))
        })
        .collect()
}

/// Keeps the object of `list` named `name`, when a name was given: none
/// is `KIND NAMESPACE/NAME not found`.
pub(crate) fn keep_named<T>(
    list: &mut Vec<T>,
    name: Option<&str>,
    name_of: impl Fn(&T) -> &String,
    kind: &str,
    namespace: &str,
) -> Result<(), CliError> {
    let Some(name) = name else { return Ok(()) };
    list.retain(|o| name_of(o) == name);
    match list.is_empty() {
        true => Err(format!("{kind} {namespace}/{name} not found").into()),
        false => Ok(()),
    }
}
