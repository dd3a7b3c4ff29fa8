//! The OpenAPI v3 documents kubectl reads: for each kind, a PATCH operation
//! that takes `fieldValidation` (with it kubectl leaves validation to the
//! server, `fieldValidation=Strict`, instead of failing to download the
//! schemas), and the object schemas `kubectl explain` walks (`schemas.rs`).
//! The PATCH operations name no request body types, so kubectl's apply
//! computes its patches from its built-in scheme, not from these schemas.

use serde_json::{Map, Value, json};

use super::discovery::{APPS, CORE, NETWORKING, NETWORKING_GROUP, Resource};

/// The type of `/openapi/v2` as the kube-apiserver names it (kubectl asks
/// for `...spec.v2@v1.0+protobuf`, which Go's media type parser refuses
/// in an answer).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: every schema in gnostic's protobuf (`openapi_v2.rs`).
pub fn v2() -> Vec<u8> {
    super::openapi_v2::document()
}

/// `/openapi/v3`: where each group-version's document is.
pub fn root() -> Value {
    json!({ "paths": {
        "api/v1": { "serverRelativeURL": "/openapi/v3/api/v1" },
        "apis/apps/v1": { "serverRelativeURL": "/openapi/v3/apis/apps/v1" },
        "apis/networking.k8s.io/v1": { "serverRelativeURL": "/openapi/v3/apis/networking.k8s.io/v1" },
        "apis/discovery.k8s.io/v1": { "serverRelativeURL": "/openapi/v3/apis/discovery.k8s.io/v1" },
    }})
}

fn document(prefix: &str, group: &str, resources: &[Resource]) -> Value {
    let mut paths = Map::new();
    for r in resources {
        let path = match r.namespaced {
            true => format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.name),
            false => format!("{prefix}/{}/{{name}}", r.name),
        };
        let gvk = json!({ "group": r.group, "version": "v1", "kind": r.kind });
        let patch = json!({
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": [{ "name": "fieldValidation", "in": "query", "schema": { "type": "string", "uniqueItems": true } }],
        });
        paths.insert(path, json!({ "patch": patch }));
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (podnet)", "version": "v1.32.0" },
        "paths": paths,
        "components": { "schemas": super::schemas::components(group) },
    })
}

/// `/openapi/v3/api/v1`.
pub fn core() -> Value {
    document("/api/v1", "", &CORE)
}

/// `/openapi/v3/apis/networking.k8s.io/v1`.
pub fn networking() -> Value {
    document("/apis/networking.k8s.io/v1", NETWORKING_GROUP, &NETWORKING)
}

/// `/openapi/v3/apis/discovery.k8s.io/v1`.
pub fn discovery() -> Value {
    document("/apis/discovery.k8s.io/v1", super::endpointslices::GROUP, &super::discovery::DISCOVERY)
}

/// `/openapi/v3/apis/apps/v1`.
pub fn apps() -> Value {
    document("/apis/apps/v1", "apps", &APPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_patch_that_takes_field_validation() {
        let doc = core();
        let pods = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(pods["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert_eq!(pods["parameters"][0]["name"], "fieldValidation");
        assert!(doc["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert_eq!(
            apps()["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]["x-kubernetes-group-version-kind"]
                ["group"],
            "apps"
        );
    }
}
