//! A pod as its node gets it: its container's ConfigMap and Secret
//! references resolved into variables (or into the reason they cannot be,
//! which the node shows as CreateContainerConfigError). So a node holds the
//! values its own pods use, and never a ConfigMap or Secret whole.

use std::borrow::Cow;

use super::{ControlPlane, key};
use crate::model::env_refs::{self, Lookup, Source, Values};
use crate::store::PodRecord;

/// The objects of one namespace, for [`env_refs::resolve`].
struct Namespace<'a> {
    cp: &'a ControlPlane,
    namespace: &'a str,
}

impl Lookup for Namespace<'_> {
    fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>> {
        let k = key(self.namespace, name);
        match source {
            Source::ConfigMap => {
                let c = self.cp.configmaps.get(&k)?;
                Some(Box::new(c.spec.data.iter().map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))))
            }
            Source::Secret => {
                let s = self.cp.secrets.get(&k)?;
                Some(Box::new(s.spec.data.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v)))))
            }
        }
    }
}

impl ControlPlane {
    /// `record` with its references resolved, for the node it runs on.
    pub(super) fn for_node(&self, record: &PodRecord) -> PodRecord {
        let mut out = record.clone();
        let namespace = record.spec.namespace.as_str();
        let Some(image) = out.spec.template.image.as_mut().filter(|i| !i.env_refs.is_empty()) else {
            return out;
        };
        let lookup = Namespace { cp: self, namespace };
        match env_refs::resolve(&image.env_refs, namespace, &lookup) {
            Ok(resolved) => {
                let literal = std::mem::take(&mut image.env);
                image.env = resolved.from.into_iter().chain(literal).chain(resolved.keys).collect();
            }
            Err(why) => image.env_error = Some(why.to_string()),
        }
        image.env_refs.clear();
        out
    }
}
