//! Following a pod's log (`kubectl logs -f`, `podnet` API streams): the
//! current file's last bytes first, then what the pod writes, until the
//! reader goes away or the pod's process ends. The log is a plain file the
//! agent's reader thread appends to and rotates (`pod::log`), so following
//! is polling it: a rotation shows as a new file at the path (another inode,
//! or a shorter one), read from its start once the old one is drained.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

/// How often the file is looked at for new bytes.
const POLL: Duration = Duration::from_millis(200);
/// Largest chunk sent at once (the stream's buffer is a few of these).
const CHUNK: usize = 32 << 10;
/// Chunks buffered for a slow reader before the follower waits on it.
pub const BUFFERED_CHUNKS: usize = 8;
/// Polls after the process ended, so the reader thread's last copy lands.
const DRAIN_POLLS: u32 = 3;

/// Follows `path`: first at most `backlog` bytes of what it holds (one
/// chunk, possibly empty, so a caller can cut it by lines), then new bytes
/// as they come. Ends when `alive` says the pod's process is gone (after a
/// last read) or `out` is closed.
pub async fn follow(
    path: PathBuf,
    backlog: u64,
    alive: impl Fn() -> bool + Send + 'static,
    out: mpsc::Sender<Vec<u8>>,
) {
    // No backlog (an attach): from the end, what comes from now on.
    let mut file = if backlog == 0 { Tail::at_end(&path) } else { Tail::open(&path, backlog) };
    let first = file.as_mut().map(|f| f.read_all()).unwrap_or_default();
    if out.send(first).await.is_err() {
        return;
    }
    let mut drain = DRAIN_POLLS;
    loop {
        tokio::select! {
            () = out.closed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        if !alive() {
            drain = drain.saturating_sub(1);
        }
        loop {
            let chunk = match file.as_mut() {
                Some(f) => f.read_chunk(),
                None => Vec::new(),
            };
            if chunk.is_empty() {
                break;
            }
            if out.send(chunk).await.is_err() {
                return;
            }
        }
        // Drained: a new file at the path (rotated, or made at last) is next.
        if file.as_ref().is_none_or(|f| f.replaced(&path)) {
            file = Tail::open(&path, 0).or(file);
            if file.as_ref().is_some_and(|f| f.offset == 0 && f.len() > 0) {
                continue;
            }
        }
        if drain == 0 {
            return;
        }
    }
}

/// An open log file and how far it was read.
struct Tail {
    file: File,
    inode: u64,
    offset: u64,
}

impl Tail {
    /// Opens `path` at `from_end` bytes before its end (0: at its start).
    fn open(path: &std::path::Path, from_end: u64) -> Option<Tail> {
        let mut file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        let offset = if from_end == 0 { 0 } else { meta.len().saturating_sub(from_end) };
        file.seek(SeekFrom::Start(offset)).ok()?;
        Some(Tail { file, inode: meta.ino(), offset })
    }

    /// Opens `path` at its end.
    fn at_end(path: &std::path::Path) -> Option<Tail> {
        let mut file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        let offset = file.seek(SeekFrom::End(0)).ok()?;
        Some(Tail { file, inode: meta.ino(), offset })
    }

    fn len(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }

    /// Everything from the offset to the end.
    fn read_all(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let n = self.file.read_to_end(&mut bytes).unwrap_or(0);
        self.offset += n as u64;
        bytes
    }

    /// At most [`CHUNK`] new bytes (empty at the end).
    fn read_chunk(&mut self) -> Vec<u8> {
        let mut bytes = vec![0; CHUNK];
        let n = read_some(&mut self.file, &mut bytes).unwrap_or(0);
        bytes.truncate(n);
        self.offset += n as u64;
        bytes
    }

    /// Whether the file at `path` is no longer this one (rotated away, or
    /// cut shorter than what was read).
    fn replaced(&self, path: &std::path::Path) -> bool {
        match std::fs::metadata(path) {
            Ok(meta) => meta.ino() != self.inode || meta.len() < self.offset,
            Err(_) => false,
        }
    }
}

fn read_some(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Whether host process `pid` still runs (a zombie counts as ended).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-follow-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn next(rx: &mut mpsc::Receiver<Vec<u8>>) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a chunk in time")
            .expect("open")
    }

    #[tokio::test]
    async fn follows_appends_and_rotations_and_ends_with_the_process() {
        let dir = dir("rotate");
        let path = dir.join("p.log");
        std::fs::write(&path, b"old line\nlast line\n").unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(BUFFERED_CHUNKS);
        let flag = alive.clone();
        let task = tokio::spawn(follow(path.clone(), 10, move || flag.load(Ordering::SeqCst), tx));
        assert_eq!(next(&mut rx).await, b"last line\n", "the backlog is cut to its bytes");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"new\n").unwrap();
        assert_eq!(next(&mut rx).await, b"new\n");
        // Rotated as pod::log does: renamed, a new file at the path.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"tail of old\n").unwrap();
        std::fs::rename(&path, dir.join("p.log.1")).unwrap();
        std::fs::write(&path, b"fresh\n").unwrap();
        let mut got = Vec::new();
        while got.len() < b"tail of old\nfresh\n".len() {
            got.extend(next(&mut rx).await);
        }
        assert_eq!(got, b"tail of old\nfresh\n");
        alive.store(false, Ordering::SeqCst);
        let end = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("ends");
        assert!(end.is_none(), "the stream ends with the process");
        task.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_reader_that_goes_stops_the_follower_and_a_missing_file_waits() {
        let dir = dir("gone");
        let path = dir.join("p.log");
        let (tx, mut rx) = mpsc::channel(BUFFERED_CHUNKS);
        let task = tokio::spawn(follow(path.clone(), 1 << 20, || true, tx));
        assert_eq!(next(&mut rx).await, b"", "nothing yet");
        std::fs::write(&path, b"made\n").unwrap();
        assert_eq!(next(&mut rx).await, b"made\n");
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_process_is_alive_and_a_free_pid_is_not() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(i32::MAX));
    }
}
