//! Which URL names what: discovery documents, a resource's collection (in a
//! namespace or across them), one object, or a deployment's scale.

use super::discovery::{self, Resource};
use super::openapi;
use super::status::Status;
use super::stream::Kind;

/// What a request path names.
#[derive(Debug, Clone)]
pub enum Route<'a> {
    /// A discovery document or `/version`.
    Document(fn() -> serde_json::Value),
    /// A collection; `namespace` None for every namespace (or a
    /// cluster-scoped resource).
    Collection {
        /// The resource.
        resource: &'static Resource,
        /// The namespace in the path.
        namespace: Option<&'a str>,
    },
    /// One object.
    Object {
        /// The resource.
        resource: &'static Resource,
        /// The namespace in the path (None for cluster-scoped ones).
        namespace: Option<&'a str>,
        /// The object's name.
        name: &'a str,
    },
    /// A pod's log (`kubectl logs`).
    Log {
        /// Namespace.
        namespace: &'a str,
        /// Pod name.
        name: &'a str,
    },
    /// A pod's streaming subresource (exec, attach, port-forward).
    Stream {
        /// Which.
        kind: super::stream::Kind,
        /// Namespace.
        namespace: &'a str,
        /// Pod name.
        name: &'a str,
    },
    /// A deployment's scale subresource.
    Scale {
        /// Namespace.
        namespace: &'a str,
        /// Deployment name.
        name: &'a str,
    },
}

/// Routes `path` (without the query).
pub fn route(path: &str) -> Result<Route<'_>, Status> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["version"] => return Ok(Route::Document(discovery::version)),
        ["api"] => return Ok(Route::Document(discovery::core_versions)),
        ["openapi", "v3"] => return Ok(Route::Document(openapi::root)),
        ["openapi", "v3", "api", "v1"] => return Ok(Route::Document(openapi::core)),
        ["openapi", "v3", "apis", "apps", "v1"] => return Ok(Route::Document(openapi::apps)),
        ["openapi", "v3", "apis", "networking.k8s.io", "v1"] => {
            return Ok(Route::Document(openapi::networking));
        }
        ["openapi", "v3", "apis", "discovery.k8s.io", "v1"] => {
            return Ok(Route::Document(openapi::discovery));
        }
        ["api", "v1"] => return Ok(Route::Document(discovery::core_resources)),
        ["apis"] => return Ok(Route::Document(discovery::groups)),
        ["apis", "apps"] => return Ok(Route::Document(discovery::apps_group)),
        ["apis", "apps", "v1"] => return Ok(Route::Document(discovery::apps_resources)),
        ["apis", "networking.k8s.io"] => return Ok(Route::Document(discovery::networking_group)),
        ["apis", "networking.k8s.io", "v1"] => return Ok(Route::Document(discovery::networking_resources)),
        ["apis", "discovery.k8s.io"] => return Ok(Route::Document(discovery::discovery_group)),
        ["apis", "discovery.k8s.io", "v1"] => return Ok(Route::Document(discovery::discovery_resources)),
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        ["apis", "networking.k8s.io", "v1", rest @ ..] => (discovery::NETWORKING_GROUP, rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => (super::endpointslices::GROUP, rest),
        _ => return Err(Status::no_path()),
    };
    let find = |name: &str| discovery::find(group, name).ok_or_else(Status::no_path);
    let checked = |name: &str| (!name.is_empty()).then_some(()).ok_or_else(Status::no_path);
    match rest {
        [resource] => Ok(Route::Collection { resource: find(resource)?, namespace: None }),
        [resource, name] => {
            let resource = find(resource)?;
            checked(name)?;
            match resource.namespaced {
                false => Ok(Route::Object { resource, namespace: None, name }),
                true => Err(Status::no_path()),
            }
        }
        ["namespaces", ns, resource, tail @ ..] => {
            checked(ns)?;
            let resource = find(resource)?;
            if !resource.namespaced {
                return Err(Status::no_path());
            }
            match tail {
                [] => Ok(Route::Collection { resource, namespace: Some(ns) }),
                [name] => {
                    checked(name)?;
                    Ok(Route::Object { resource, namespace: Some(ns), name })
                }
                [name, "scale"] if resource.name == "deployments" => {
                    checked(name)?;
                    Ok(Route::Scale { namespace: ns, name })
                }
                [name, "log"] if resource.name == "pods" => {
                    checked(name)?;
                    Ok(Route::Log { namespace: ns, name })
                }
                [name, sub @ ("exec" | "attach" | "portforward")] if resource.name == "pods" => {
                    checked(name)?;
                    let kind = match *sub {
                        "exec" => Kind::Exec,
                        "attach" => Kind::Attach,
                        _ => Kind::PortForward,
                    };
                    Ok(Route::Stream { kind, namespace: ns, name })
                }
                _ => Err(Status::no_path()),
            }
        }
        _ => Err(Status::no_path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_objects_and_scale() {
        let r = |p| route(p).unwrap();
        assert!(matches!(r("/api/v1/pods"), Route::Collection { namespace: None, .. }));
        assert!(matches!(
            r("/api/v1/namespaces/default/pods"),
            Route::Collection { namespace: Some("default"), .. }
        ));
        assert!(matches!(r("/api/v1/namespaces/default/pods/web"), Route::Object { name: "web", .. }));
        assert!(matches!(
            r("/api/v1/namespaces/default"),
            Route::Object { namespace: None, name: "default", .. }
        ));
        assert!(matches!(r("/api/v1/nodes/pi1"), Route::Object { namespace: None, name: "pi1", .. }));
        assert!(matches!(
            r("/apis/apps/v1/namespaces/a/deployments/web/scale"),
            Route::Scale { namespace: "a", name: "web" }
        ));
        for bad in [
            "/api/v1/pods/web",
            "/api/v1/namespaces/a/nodes",
            "/apis/apps/v1/namespaces/a/pods",
            "/api/v1/widgets",
            "/x",
            "/api/v1/namespaces/a/services/web/log",
            "/api/v1/namespaces//pods",
        ] {
            assert_eq!(route(bad).unwrap_err().code, 404, "{bad}");
        }
        assert!(matches!(r("/api/v1/namespaces/a/pods/web/log"), Route::Log { namespace: "a", name: "web" }));
        assert!(matches!(
            r("/api/v1/namespaces/a/pods/web/exec"),
            Route::Stream { kind: Kind::Exec, namespace: "a", name: "web" }
        ));
        assert!(matches!(
            r("/api/v1/namespaces/a/pods/web/portforward"),
            Route::Stream { kind: Kind::PortForward, .. }
        ));
        assert_eq!(route("/api/v1/namespaces/a/services/web/exec").unwrap_err().code, 404);
    }
}
