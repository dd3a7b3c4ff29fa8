//! ConfigMaps in the control plane: checked, stored with the rest of the
//! state (so with revisions, saved before they are acknowledged, undone if
//! saving fails). Nodes never get them whole: a pod's `valueFrom` and
//! `envFrom` are resolved into its desired state (see `env.rs`).

use std::sync::Arc;

use super::{ControlError, ControlPlane, Now, key};
use crate::api::{Request, Response};
use crate::model::configmap::{ConfigMap, ConfigMapSpec, check_configmap};

/// Most ConfigMaps a cluster holds.
pub(super) const MAX_CONFIGMAPS: usize = 1000;
/// Most bytes of ConfigMap data a cluster holds, all of them together: the
/// state file is rewritten whole on every change, on an SD card.
pub(super) const MAX_CONFIGMAP_TOTAL: usize = 16 * 1024 * 1024;

impl ControlPlane {
    /// Answers the ConfigMap requests.
    pub(super) fn configmap_request(&mut self, now: Now, request: Request) -> Result<Response, ControlError> {
        match request {
            Request::CreateConfigMap(spec) => self.put_configmap(now, spec, false).map(Response::ConfigMap),
            Request::UpdateConfigMap(spec) => self.put_configmap(now, spec, true).map(Response::ConfigMap),
            Request::GetConfigMaps { namespace } => Ok(Response::ConfigMaps(
                self.configmaps
                    .values()
                    .filter(|c| namespace.as_deref().is_none_or(|n| n == c.spec.namespace))
                    .map(|c| ConfigMap::clone(c))
                    .collect(),
            )),
            Request::DeleteConfigMap { namespace, name } => self.transact(|cp| {
                cp.configmaps.remove(&key(&namespace, &name)).ok_or(ControlError::NotFound {
                    kind: "configmap",
                    namespace,
                    name,
                })?;
                Ok(Response::Done)
            }),
            _ => unreachable!("only ConfigMap requests come here"),
        }
    }

    /// Creates a ConfigMap, or replaces one's data (`replace`).
    fn put_configmap(
        &mut self,
        now: Now,
        spec: ConfigMapSpec,
        replace: bool,
    ) -> Result<ConfigMap, ControlError> {
        check_configmap(&spec)?;
        let k = key(&spec.namespace, &spec.name);
        let old = self.configmaps.get(&k);
        let configmap = match (old, replace) {
            (Some(_), false) => {
                return Err(ControlError::Exists {
                    kind: "configmap",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (None, true) => {
                return Err(ControlError::NotFound {
                    kind: "configmap",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (Some(old), true) => ConfigMap { spec, ..ConfigMap::clone(old) },
            (None, false) => {
                if self.configmaps.len() >= MAX_CONFIGMAPS {
                    return Err(ControlError::TooMany { kind: "configmap", max: MAX_CONFIGMAPS });
                }
                ConfigMap { uid: self.rng.id(16), created_at: now.unix, spec }
            }
        };
        let others: usize =
            self.configmaps.iter().filter(|(key, _)| **key != k).map(|(_, c)| c.spec.size()).sum();
        let total = others + configmap.spec.size();
        if total > MAX_CONFIGMAP_TOTAL {
            return Err(ControlError::ConfigMapBytes { total, max: MAX_CONFIGMAP_TOTAL });
        }
        self.transact(|cp| {
            cp.configmaps.insert(k, Arc::new(configmap.clone()));
            Ok(configmap)
        })
    }
}
