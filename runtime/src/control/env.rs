//! A pod as its node gets it: its container's ConfigMap and Secret
//! references resolved into variables and volume files, and its downward
//! API variables into values (or into the reason they cannot be, which the
//! node shows as CreateContainerConfigError). So a node holds the values
//! its own pods use, and never a ConfigMap or Secret whole.

use std::borrow::Cow;

use super::{ControlPlane, key};
use crate::model::env_refs::{self, Bytes, FieldPath, Lookup, Source, Values};
use crate::model::volumes;
use crate::store::PodRecord;

/// The objects of the pod's namespace, and the pod, for
/// [`env_refs::resolve`] and [`volumes::resolve`].
struct Namespace<'a> {
    cp: &'a ControlPlane,
    pod: &'a PodRecord,
}

impl Lookup for Namespace<'_> {
    fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>> {
        let k = key(&self.pod.spec.namespace, name);
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

    fn bytes<'a>(&'a self, source: Source, name: &str) -> Option<Bytes<'a>> {
        let k = key(&self.pod.spec.namespace, name);
        match source {
            Source::ConfigMap => {
                let c = &self.cp.configmaps.get(&k)?.spec;
                let text = c.data.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
                Some(Box::new(text.chain(c.binary_data.iter().map(|(k, v)| (k.as_str(), v.as_slice())))))
            }
            Source::Secret => {
                let s = self.cp.secrets.get(&k)?;
                Some(Box::new(s.spec.data.iter().map(|(k, v)| (k.as_str(), v.as_slice()))))
            }
        }
    }

    fn field(&self, path: &FieldPath) -> String {
        let (pod, spec) = (self.pod, &self.pod.spec);
        match path {
            FieldPath::Name => spec.name.clone(),
            FieldPath::Namespace => spec.namespace.clone(),
            FieldPath::Uid => pod.uid.clone(),
            FieldPath::Label(k) => spec.labels.get(k).cloned().unwrap_or_default(),
            FieldPath::Annotation(k) => spec.annotations.get(k).cloned().unwrap_or_default(),
            FieldPath::NodeName => pod.node.clone(),
            FieldPath::ServiceAccountName => "default".into(),
            FieldPath::PodIp => pod.ip.to_string(),
            FieldPath::HostIp => {
                let address = self.cp.nodes.get(&pod.node).and_then(|n| n.record.address);
                address.map(|ip| ip.to_string()).unwrap_or_default()
            }
        }
    }
}

impl ControlPlane {
    /// `record` with its references resolved, for the node it runs on.
    pub(super) fn for_node(&self, record: &PodRecord) -> PodRecord {
        let mut out = record.clone();
        let namespace = record.spec.namespace.as_str();
        let Some(image) =
            out.spec.template.image.as_mut().filter(|i| !i.env_refs.is_empty() || !i.volumes.is_empty())
        else {
            return out;
        };
        let lookup = Namespace { cp: self, pod: record };
        let resolved = env_refs::resolve(&image.env_refs, namespace, &lookup)
            .and_then(|env| Ok((env, volumes::resolve(&image.volumes, &lookup)?)));
        match resolved {
            Ok((env, files)) => {
                let literal = std::mem::take(&mut image.env);
                image.env = env.from.into_iter().chain(literal).chain(env.keys).collect();
                image.files = files;
            }
            Err(why) => image.env_error = Some(why.to_string()),
        }
        image.env_refs.clear();
        out
    }
}
