//! A list's body written as its items come: each item is rendered, written
//! to the bytes and dropped before the next, and the bytes leave in chunks
//! of [`CHUNK`] as the connection takes them, so a 500-pod list never holds
//! 500 JSON trees, nor its whole body, at once (that transient memory is
//! what glibc kept as the agent's high-water mark). The envelope is the one
//! `objects::list` and `table::table` build whole.

use serde_json::{Value, json};

use super::table::{self, Include};

/// The bytes a list sends at a time.
pub const CHUNK: usize = 32 * 1024;

/// What the list is shown as.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'a> {
    /// A typed list (`PodList`) of `api_version`.
    List {
        /// The list's apiVersion.
        api_version: &'a str,
    },
    /// A meta.k8s.io/v1 Table with rows as `include` says, ages as of `now`.
    Table {
        /// What each row carries.
        include: Include,
        /// Unix time the ages are counted to.
        now: u64,
    },
}

/// A list body being written.
pub struct ListBody<'a> {
    kind: &'a str,
    shape: Shape<'a>,
    out: Vec<u8>,
    first: bool,
}

/// Appends `value`'s JSON to `out` (a `Value` always serializes).
fn write(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    serde_json::to_writer(out, value).expect("JSON values and strings serialize into a Vec");
}

impl<'a> ListBody<'a> {
    /// Starts the body of a list of `kind` objects at revision `rv`.
    pub fn new(kind: &'a str, shape: Shape<'a>, rv: u64) -> ListBody<'a> {
        let mut out = Vec::with_capacity(CHUNK + 4096);
        let metadata = json!({ "resourceVersion": rv.to_string() });
        match shape {
            Shape::List { api_version } => {
                out.extend_from_slice(b"{\"apiVersion\":");
                write(&mut out, &api_version);
                out.extend_from_slice(b",\"kind\":");
                write(&mut out, &format!("{kind}List"));
                out.extend_from_slice(b",\"metadata\":");
                write(&mut out, &metadata);
                out.extend_from_slice(b",\"items\":[");
            }
            Shape::Table { .. } => {
                out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":");
                write(&mut out, &metadata);
                out.extend_from_slice(b",\"columnDefinitions\":");
                write(&mut out, &table::definitions(kind));
                out.extend_from_slice(b",\"rows\":[");
            }
        }
        ListBody { kind, shape, out, first: true }
    }

    /// Writes one object (as an item, or as its row).
    pub fn push(&mut self, object: &Value) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        match self.shape {
            Shape::List { .. } => write(&mut self.out, object),
            Shape::Table { include, now } => {
                write(&mut self.out, &table::row(self.kind, object, include, now))
            }
        }
    }

    /// The bytes written so far, once they fill a chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        (self.out.len() >= CHUNK).then(|| std::mem::replace(&mut self.out, Vec::with_capacity(CHUNK + 4096)))
    }

    /// The rest of the body.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"]}");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::objects;

    /// The written bytes are the JSON the whole-tree builders make.
    #[test]
    fn a_written_list_or_table_is_the_one_built_whole() {
        let items = vec![
            json!({ "metadata": { "name": "a", "creationTimestamp": "1970-01-01T00:00:00Z" }, "data": { "k": "v" } }),
            json!({ "metadata": { "name": "b\"c", "creationTimestamp": "1970-01-01T00:00:00Z" } }),
        ];
        let mut list = ListBody::new("ConfigMap", Shape::List { api_version: "v1" }, 9);
        items.iter().for_each(|o| list.push(o));
        let written: Value = serde_json::from_slice(&list.finish()).unwrap();
        assert_eq!(written, objects::list("ConfigMap", "v1", items.clone(), 9));

        // In chunks: the same bytes.
        let many: Vec<Value> =
            (0..2000).map(|i| json!({ "metadata": { "name": format!("cm{i}") } })).collect();
        let mut list = ListBody::new("ConfigMap", Shape::List { api_version: "v1" }, 9);
        let mut bytes = Vec::new();
        for o in &many {
            list.push(o);
            if let Some(chunk) = list.chunk() {
                assert!(chunk.len() >= CHUNK);
                bytes.extend(chunk);
            }
        }
        assert!(bytes.len() > CHUNK, "it came in chunks");
        bytes.extend(list.finish());
        let written: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(written, objects::list("ConfigMap", "v1", many, 9));

        let shape = Shape::Table { include: Include::Metadata, now: 65 };
        let mut rows = ListBody::new("ConfigMap", shape, 3);
        items.iter().for_each(|o| rows.push(o));
        let written: Value = serde_json::from_slice(&rows.finish()).unwrap();
        assert_eq!(written, table::table("ConfigMap", &items, Include::Metadata, 65, 3));

        let empty = ListBody::new("Pod", Shape::List { api_version: "v1" }, 1).finish();
        assert_eq!(serde_json::from_slice::<Value>(&empty).unwrap()["items"], json!([]));
    }
}
