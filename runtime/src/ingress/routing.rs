//! The routing table: which backend a request's host and path go to, as
//! networking.k8s.io/v1 says. Pure: built from the Ingresses and the
//! Services' endpoints, asked per request, tested against the spec's table.
//!
//! - Hosts: an exact host first, then a `*.example.com` wildcard (one label
//!   exactly: not `example.com`, not `a.b.example.com`), then the rules
//!   without a host. The first group that has the host decides; a path it
//!   lacks goes to that host's default backend, not to another group (as
//!   ingress-nginx's servers do).
//! - Default backends, as ingress-nginx's `createServers`: an Ingress's
//!   `spec.defaultBackend` answers the paths no rule matches on the hosts
//!   that Ingress named first (the older Ingress owns a host); the oldest
//!   Ingress with a default backend and no rules at all is the catch-all,
//!   for hosts no rule names (and the host-less rules' unmatched paths).
//!   Anything else unmatched is 404.
//! - Paths: the longest match wins, Exact before Prefix on a tie; Prefix is
//!   segment-wise (`/api` matches `/api`, `/api/`, `/api/x`, not `/apix`)
//!   with a trailing `/` of the rule ignored; ImplementationSpecific is Prefix.
//! - Several Ingresses for one host merge; the older one keeps a path both name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::model::ingress::{BackendPort, Ingress, IngressBackend, PathType};
use crate::model::{Endpoints, Service};

/// The ready endpoints of one Service port, balanced per request.
#[derive(Debug)]
pub struct Backends {
    /// `namespace/service:port`, for messages and logs.
    pub name: String,
    /// Pod address and target port of each ready endpoint.
    pub addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Backends {
    /// The endpoints in the order to try them: a different first one each
    /// request (round robin), then the others for retries.
    pub fn order(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let n = self.addrs.len();
        let start = match n {
            0 => 0,
            _ => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        (0..n).map(move |i| self.addrs[(start + i) % n])
    }
}

/// Where one rule sends a request.
#[derive(Debug, Clone)]
pub struct Route {
    /// The rule, `namespace/ingress host path` (or `default backend`), for stats.
    pub rule: Arc<str>,
    /// The backend's endpoints.
    pub backends: Arc<Backends>,
    /// Plain HTTP to this host is redirected to HTTPS (308).
    pub redirect: bool,
}

#[derive(Debug, Default)]
struct Paths {
    /// The default backend of the Ingress that named this host first.
    fallback: Option<Route>,
    exact: HashMap<String, Route>,
    /// Prefixes without a trailing `/` ("" for `/`), longest first.
    prefix: Vec<(String, Route)>,
}

impl Paths {
    fn add(&mut self, path: &str, path_type: PathType, route: Route) {
        match path_type {
            PathType::Exact => {
                self.exact.entry(path.to_string()).or_insert(route);
            }
            PathType::Prefix | PathType::ImplementationSpecific => {
                let p = path.trim_end_matches('/');
                if !self.prefix.iter().any(|(q, _)| q == p) {
                    self.prefix.push((p.to_string(), route));
                }
            }
        }
    }

    fn sort(&mut self) {
        // Stable: among equal lengths the older Ingress's path stays first.
        self.prefix.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    /// The longest matching path: an Exact match is the whole path, so it
    /// is never shorter than a Prefix match and wins a tie, as the spec says.
    fn find(&self, path: &str) -> Option<&Route> {
        self.exact.get(path).or_else(|| {
            let mut matching = self.prefix.iter().filter(|(p, _)| {
                path.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
            matching.next().map(|(_, route)| route)
        })
    }
}

/// Every podnet Ingress's rules, merged.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Paths>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Paths>,
    any: Option<Paths>,
    /// The catch-all: the oldest default backend of an Ingress without rules.
    default: Option<Route>,
}

/// What the table says about a request.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// This rule's backend.
    Route(&'a Route),
    /// No rule and no default backend: 404.
    NotFound,
}

impl Table {
    /// The table of `ingresses` (podnet's class only, oldest first wins),
    /// their backends resolved against `services`.
    pub fn build(ingresses: &[Ingress], services: &[(Service, Endpoints)]) -> Table {
        let mut ingresses: Vec<&Ingress> = ingresses.iter().filter(|i| i.spec.is_podnet()).collect();
        ingresses.sort_by(|a, b| {
            (a.created_at, &a.spec.namespace, &a.spec.name).cmp(&(
                b.created_at,
                &b.spec.namespace,
                &b.spec.name,
            ))
        });
        let mut table = Table::default();
        let mut pool: HashMap<(String, IngressBackend), Arc<Backends>> = HashMap::new();
        let mut backends = |namespace: &str, backend: &IngressBackend| {
            pool.entry((namespace.to_string(), backend.clone()))
                .or_insert_with(|| Arc::new(resolve(namespace, backend, services)))
                .clone()
        };
        for ingress in ingresses {
            let spec = &ingress.spec;
            let id = format!("{}/{}", spec.namespace, spec.name);
            let fallback = spec.default_backend.as_ref().map(|backend| Route {
                rule: format!("{id} default").into(),
                backends: backends(&spec.namespace, backend),
                redirect: false,
            });
            if spec.rules.is_empty() && table.default.is_none() {
                table.default = fallback.clone();
            }
            let tls_hosts: Vec<&str> =
                spec.tls.iter().flat_map(|t| t.hosts.iter().map(String::as_str)).collect();
            for rule in &spec.rules {
                let redirect =
                    spec.ssl_redirect() && rule.host.as_deref().is_some_and(|h| tls_hosts.contains(&h));
                // A host's group takes the default backend of the Ingress that made it.
                let paths = match rule.host.as_deref() {
                    Some(host) => {
                        let group = match host.strip_prefix("*.") {
                            Some(suffix) => table.wildcard.entry(suffix.to_string()),
                            None => table.exact.entry(host.to_string()),
                        };
                        group.or_insert_with(|| Paths { fallback: fallback.clone(), ..Paths::default() })
                    }
                    None => table.any.get_or_insert_with(Paths::default),
                };
                let host = rule.host.as_deref().unwrap_or("*");
                for p in &rule.paths {
                    let route = Route {
                        rule: format!("{id} {host}{}", p.path).into(),
                        backends: backends(&spec.namespace, &p.backend),
                        redirect,
                    };
                    paths.add(&p.path, p.path_type, route);
                }
            }
        }
        table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain(table.any.iter_mut())
            .for_each(Paths::sort);
        table
    }

    /// Where a request for `host` (lowercase, without a port) and `path` goes.
    pub fn route(&self, host: &str, path: &str) -> Decision<'_> {
        let wildcard = || host.split_once('.').and_then(|(_, suffix)| self.wildcard.get(suffix));
        let found = match self.exact.get(host).or_else(wildcard) {
            Some(paths) => paths.find(path).or(paths.fallback.as_ref()),
            None => self.any.as_ref().and_then(|p| p.find(path)).or(self.default.as_ref()),
        };
        match found {
            Some(route) => Decision::Route(route),
            None => Decision::NotFound,
        }
    }

    /// Whether the table routes anything at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none() && self.default.is_none()
    }
}

/// The ready endpoints of `backend` (a Service of `namespace`): its port by
/// number or name, then each ready pod's target port for it.
fn resolve(namespace: &str, backend: &IngressBackend, services: &[(Service, Endpoints)]) -> Backends {
    let name = format!("{namespace}/{backend}");
    let found =
        services.iter().find(|(s, _)| s.spec.namespace == namespace && s.spec.name == backend.service);
    let addrs = found
        .and_then(|(service, endpoints)| {
            let port = service.spec.ports.iter().find(|p| match &backend.port {
                BackendPort::Number(n) => p.port == *n,
                BackendPort::Name(name) => p.name.as_deref() == Some(name),
            })?;
            Some(
                endpoints
                    .subsets
                    .iter()
                    .filter_map(|(address, ports)| {
                        let target =
                            ports.iter().find(|e| e.name == port.name && e.protocol == port.protocol)?;
                        Some(SocketAddr::new(address.ip, target.port))
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    Backends { name, addrs, next: AtomicUsize::new(0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ingress::{IngressPath, IngressRule, IngressSpec, IngressTls, SSL_REDIRECT};
    use crate::model::{
        ClusterIpRequest, EndpointAddress, EndpointPort, Protocol, ServicePort, ServiceSpec, ServiceType,
        TargetPort,
    };

    fn service(name: &str, ip: [u8; 4]) -> (Service, Endpoints) {
        let spec = ServiceSpec {
            name: name.into(),
            namespace: "default".into(),
            cluster_ip: ClusterIpRequest::Auto,
            ports: vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: TargetPort::Number(8080),
                protocol: Protocol::Tcp,
                node_port: None,
            }],
            selector: Default::default(),
            session_affinity: Default::default(),
            external_name: None,
            service_type: ServiceType::ClusterIP,
            labels: Default::default(),
            annotations: Default::default(),
        };
        let endpoints = Endpoints {
            name: name.into(),
            namespace: "default".into(),
            created_at: 0,
            subsets: vec![(
                EndpointAddress { ip: ip.into(), pod: format!("{name}-0") },
                vec![EndpointPort { name: Some("http".into()), port: 8080, protocol: Protocol::Tcp }],
            )],
            not_ready: vec![],
            problems: vec![],
        };
        (Service { uid: name.into(), created_at: 0, cluster_ip: None, spec, load_balancer: None }, endpoints)
    }

    fn backend(service: &str) -> IngressBackend {
        IngressBackend { service: service.into(), port: BackendPort::Number(80) }
    }

    fn ingress(name: &str, created_at: u64, host: Option<&str>, paths: &[(&str, PathType, &str)]) -> Ingress {
        let paths = paths
            .iter()
            .map(|(path, path_type, svc)| IngressPath {
                path: path.to_string(),
                path_type: *path_type,
                backend: backend(svc),
            })
            .collect();
        Ingress {
            uid: name.into(),
            created_at,
            spec: IngressSpec {
                name: name.into(),
                namespace: "default".into(),
                class: None,
                default_backend: None,
                tls: vec![],
                rules: vec![IngressRule { host: host.map(String::from), paths }],
                labels: Default::default(),
                annotations: Default::default(),
            },
            load_balancer: None,
        }
    }

    /// Services s0..s9, each a different pod address, so a route shows which path won.
    fn services() -> Vec<(Service, Endpoints)> {
        (0..10).map(|i| service(&format!("s{i}"), [10, 244, 0, 10 + i])).collect()
    }

    fn which(table: &Table, host: &str, path: &str) -> Option<String> {
        match table.route(host, path) {
            Decision::Route(r) => Some(r.backends.name.clone()),
            Decision::NotFound => None,
        }
    }

    /// The examples table of the Ingress concept page
    /// (kubernetes.io/docs/concepts/services-networking/ingress/#examples).
    #[test]
    fn the_specs_path_matching_table() {
        use PathType::{Exact, Prefix};
        type Case = (&'static [(&'static str, PathType)], &'static str, Option<usize>);
        let cases: &[Case] = &[
            (&[("/", Prefix)], "/anything/at/all", Some(0)),
            (&[("/foo", Exact)], "/foo", Some(0)),
            (&[("/foo", Exact)], "/bar", None),
            (&[("/foo", Exact)], "/foo/", None),
            (&[("/foo/", Exact)], "/foo", None),
            (&[("/foo", Prefix)], "/foo", Some(0)),
            (&[("/foo", Prefix)], "/foo/", Some(0)),
            (&[("/foo/", Prefix)], "/foo", Some(0)),
            (&[("/foo/", Prefix)], "/foo/", Some(0)),
            (&[("/aaa/bb", Prefix)], "/aaa/bbb", None),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb", Some(0)),
            (&[("/aaa/bbb/", Prefix)], "/aaa/bbb", Some(0)),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb/", Some(0)),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb/ccc", Some(0)),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbbxyz", None),
            (&[("/", Prefix), ("/aaa", Prefix)], "/aaa/ccc", Some(1)),
            (&[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], "/aaa/bbb", Some(2)),
            (&[("/", Prefix), ("/aaa", Prefix), ("/aaa/bbb", Prefix)], "/ccc", Some(0)),
            (&[("/aaa", Prefix)], "/ccc", None),
            (&[("/foo", Prefix), ("/foo", Exact)], "/foo", Some(1)),
            (&[("/foo", Exact), ("/foo", Prefix)], "/foo", Some(0)),
            (&[("/foo", Exact), ("/foo", Prefix)], "/foo/x", Some(1)),
            // ImplementationSpecific is Prefix here.
            (&[("/api", PathType::ImplementationSpecific)], "/api/x", Some(0)),
            (&[("/api", PathType::ImplementationSpecific)], "/apix", None),
        ];
        for (paths, request, want) in cases {
            let rules: Vec<(&str, PathType, String)> =
                paths.iter().enumerate().map(|(i, (p, t))| (*p, *t, format!("s{i}"))).collect();
            let rules: Vec<(&str, PathType, &str)> =
                rules.iter().map(|(p, t, s)| (*p, *t, s.as_str())).collect();
            let table = Table::build(&[ingress("a", 1, Some("foo.example"), &rules)], &services());
            let want = want.map(|i| format!("default/s{i}:80"));
            assert_eq!(which(&table, "foo.example", request), want, "{paths:?} with {request}");
        }
    }

    #[test]
    fn wildcards_match_one_label_and_exact_hosts_come_first() {
        use PathType::Prefix;
        let table = Table::build(
            &[
                ingress("wild", 1, Some("*.example.com"), &[("/", Prefix, "s1")]),
                ingress("exact", 2, Some("shop.example.com"), &[("/", Prefix, "s2")]),
                ingress("any", 3, None, &[("/", Prefix, "s3")]),
            ],
            &services(),
        );
        assert_eq!(which(&table, "shop.example.com", "/").as_deref(), Some("default/s2:80"));
        assert_eq!(which(&table, "blog.example.com", "/").as_deref(), Some("default/s1:80"));
        // Not one label: the host-less rules answer.
        assert_eq!(which(&table, "a.b.example.com", "/").as_deref(), Some("default/s3:80"));
        assert_eq!(which(&table, "example.com", "/").as_deref(), Some("default/s3:80"));
    }

    /// As ingress-nginx: an Ingress's default backend serves its own hosts'
    /// unmatched paths; only an Ingress without rules is the catch-all.
    #[test]
    fn a_default_backend_serves_its_ingresses_hosts_and_without_rules_everything() {
        use PathType::Prefix;
        let mut shop = ingress("shop", 1, Some("shop.example"), &[("/api", Prefix, "s1")]);
        let table = Table::build(std::slice::from_ref(&shop), &services());
        assert_eq!(which(&table, "shop.example", "/web"), None);
        assert_eq!(which(&table, "other.example", "/api"), None);
        shop.spec.default_backend = Some(backend("s9"));
        // A later Ingress for the same host: shop made the host, its default stays.
        let mut later = ingress("later", 2, Some("shop.example"), &[("/later", Prefix, "s2")]);
        later.spec.default_backend = Some(backend("s8"));
        let blog = ingress("blog", 3, Some("blog.example"), &[("/", Prefix, "s3")]);
        let any = ingress("any", 4, None, &[("/any", Prefix, "s4")]);
        let table = Table::build(&[shop.clone(), later.clone(), blog.clone(), any.clone()], &services());
        assert_eq!(which(&table, "shop.example", "/web").as_deref(), Some("default/s9:80"));
        assert_eq!(which(&table, "shop.example", "/later").as_deref(), Some("default/s2:80"));
        assert_eq!(which(&table, "other.example", "/"), None, "not a catch-all: shop has rules");
        assert_eq!(which(&table, "other.example", "/any").as_deref(), Some("default/s4:80"));
        // An Ingress with a default backend and no rules is the catch-all, the oldest one.
        let mut catch = ingress("catch", 5, None, &[]);
        catch.spec.rules.clear();
        catch.spec.default_backend = Some(backend("s7"));
        let mut newer = catch.clone();
        newer.spec.name = "newer".into();
        newer.created_at = 6;
        newer.spec.default_backend = Some(backend("s6"));
        let table = Table::build(&[newer, catch, shop, later, blog, any], &services());
        assert_eq!(which(&table, "other.example", "/").as_deref(), Some("default/s7:80"));
        assert_eq!(which(&table, "other.example", "/any").as_deref(), Some("default/s4:80"));
        assert_eq!(which(&table, "shop.example", "/web").as_deref(), Some("default/s9:80"));
        assert_eq!(which(&table, "blog.example", "/x").as_deref(), Some("default/s3:80"));
        let Decision::Route(route) = table.route("other.example", "/") else { panic!("routed") };
        assert_eq!(&*route.rule, "default/catch default");
    }

    #[test]
    fn other_classes_are_ignored_and_the_older_ingress_keeps_a_shared_path() {
        let mut nginx = ingress("nginx", 0, Some("shop.example"), &[("/", PathType::Prefix, "s1")]);
        nginx.spec.class = Some("nginx".into());
        let old = ingress("old", 1, Some("shop.example"), &[("/", PathType::Prefix, "s2")]);
        let new = ingress(
            "new",
            2,
            Some("shop.example"),
            &[("/", PathType::Prefix, "s3"), ("/new", PathType::Prefix, "s4")],
        );
        let table = Table::build(&[new, nginx, old], &services());
        assert_eq!(which(&table, "shop.example", "/").as_deref(), Some("default/s2:80"));
        assert_eq!(which(&table, "shop.example", "/new/x").as_deref(), Some("default/s4:80"));
    }

    #[test]
    fn backends_resolve_ports_by_number_or_name_and_balance_per_request() {
        let mut svcs = services();
        let (_, endpoints) = &mut svcs[1];
        let second = (
            EndpointAddress { ip: [10, 244, 1, 5].into(), pod: "s1-1".into() },
            endpoints.subsets[0].1.clone(),
        );
        endpoints.subsets.push(second);
        let mut named = ingress("a", 1, None, &[("/", PathType::Prefix, "s1")]);
        named.spec.rules[0].paths[0].backend.port = BackendPort::Name("http".into());
        let missing = ingress("b", 2, Some("gone.example"), &[("/", PathType::Prefix, "nope")]);
        let table = Table::build(&[named, missing], &svcs);
        let Decision::Route(route) = table.route("x", "/") else { panic!("routed") };
        let first: Vec<_> = (0..4).map(|_| route.backends.order().next().unwrap()).collect();
        assert_eq!(first[0], first[2]);
        assert_ne!(first[0], first[1], "each request starts at the next endpoint: {first:?}");
        assert_eq!(route.backends.order().count(), 2, "a retry may try every endpoint");
        assert_eq!(route.backends.addrs[0].port(), 8080, "the pod's target port");
        let Decision::Route(gone) = table.route("gone.example", "/") else { panic!("routed") };
        assert!(gone.backends.addrs.is_empty(), "a missing Service has no endpoints: 503");
    }

    #[test]
    fn tls_hosts_redirect_unless_the_annotation_says_not() {
        let mut a = ingress("a", 1, Some("shop.example"), &[("/", PathType::Prefix, "s1")]);
        a.spec.tls = vec![IngressTls { hosts: vec!["shop.example".into()], secret_name: "shop-tls".into() }];
        let b = ingress("b", 2, Some("plain.example"), &[("/", PathType::Prefix, "s2")]);
        let table = Table::build(&[a.clone(), b], &services());
        let redirect = |t: &Table, h| match t.route(h, "/") {
            Decision::Route(r) => r.redirect,
            Decision::NotFound => panic!("routed"),
        };
        assert!(redirect(&table, "shop.example"));
        assert!(!redirect(&table, "plain.example"));
        a.spec.annotations.insert(SSL_REDIRECT.into(), "false".into());
        assert!(!redirect(&Table::build(&[a], &services()), "shop.example"));
    }
}
