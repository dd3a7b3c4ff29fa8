//! Where typed errors meet code that still passes errors as text: the
//! control plane and the agent loop answer the control socket and the
//! cluster channel with a message, so each layer's error renders there, once,
//! through these conversions (`?` in a function returning `Result<_, String>`).

macro_rules! rendered_at_the_boundary {
    ($($error:ty),* $(,)?) => {
        $(
            impl From<$error> for String {
                fn from(error: $error) -> String {
                    error.to_string()
                }
            }
        )*
    };
}

rendered_at_the_boundary!(
    crate::model::ModelError,
    crate::node::NodeError,
    crate::listeners::ListenError,
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::control::ControlError,
    crate::cluster::ClusterError,
    crate::api::server::BindError,
    crate::sys::SysError,
    crate::image::ImageError,
);
