//! podnet as a CNI plugin. The plugin is the podnet binary itself (linked
//! as `podnet` into the CNI bin dir): whenever CNI_COMMAND is set it is a
//! thin shim that hands the runtime's request to the node agent over the
//! control socket and prints the agent's answer as the CNI spec words it,
//! as Multus's and Cilium's shims do. One binary means the shim always
//! speaks the agent's protocol version. `podnet cni install|config` set it
//! up.

pub(crate) mod install;
pub(crate) mod plugin;
mod result;

/// The CNI spec versions the plugin speaks.
pub(crate) const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
