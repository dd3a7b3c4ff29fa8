//! The API's files in the data dir: written whole (temp file, then rename),
//! root-only (0600), since keys and tokens are among them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::KubeError;

/// Writes `bytes` to `path` with mode 0600, replacing it whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KubeError> {
    let fail = |source| KubeError::File { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// The text of `path`, or what `make` gives, written there first.
pub fn read_or_make(
    path: &Path,
    make: impl FnOnce() -> Result<String, KubeError>,
) -> Result<String, KubeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = make()?;
            write_private(path, text.as_bytes())?;
            Ok(text)
        }
        Err(source) => Err(KubeError::File { path: path.to_path_buf(), source }),
    }
}
