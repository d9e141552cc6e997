//! Polling files: every interval a `stat` of each file, and a read only when one's identity
//! (device, inode), size or times changed. That follows every way files get replaced (editors,
//! `mv`, the symlink swap of a Kubernetes Secret or ConfigMap volume) without reading a file
//! that did not change. A file over [`MAX_FILE_BYTES`] is refused without being read.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::shutdown::Shutdown;

/// The largest file read (the `--config` file, a certificate or key): 1 MiB, far above any real
/// one, so a wrong or hostile file cannot make the server read and hold a large one.
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file modified less than this long ago may change again within the same timestamp tick,
/// unseen by `stat`: it is read again at the next poll until it has settled.
const SETTLE: Duration = Duration::from_secs(2);

/// What one poll read: every file's content, or the first file that could not be read.
pub(crate) type Read = Result<Vec<Vec<u8>>, (usize, io::Error)>;

/// Read a whole file, refusing one over [`MAX_FILE_BYTES`] (checked before reading, and while
/// reading in case it grows). A refused file is an error of kind `FileTooLarge`.
pub(crate) fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(Some(len)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(None));
    }
    Ok(bytes)
}

fn too_large(len: Option<u64>) -> io::Error {
    let size = len.map(|n| format!(" ({n} bytes)")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the file is larger than the 1 MiB limit{size}"),
    )
}

/// What `stat` says of a file: when any of it changes, the file is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device, inode and status-change time (unix): a file replaced or rewritten keeping its
    /// modification time still differs.
    identity: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> io::Result<Self> {
        let m = std::fs::metadata(path)?;
        #[cfg(unix)]
        let identity = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
        };
        #[cfg(not(unix))]
        let identity = (0, 0, 0, 0);
        Ok(Self {
            len: m.len(),
            modified: m.modified().ok(),
            identity,
        })
    }

    fn settled(&self, now: SystemTime) -> bool {
        self.modified
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= SETTLE)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Content(Vec<Vec<u8>>),
    Error(usize, io::ErrorKind),
}

/// The state of a poll: what was seen last, and the stamps it was read at.
#[derive(Debug)]
pub(crate) struct Poller {
    paths: Vec<PathBuf>,
    /// The stamps of the last read, when it succeeded and every file had settled.
    stamps: Option<Vec<Stamp>>,
    last: Seen,
    reads: u64,
}

impl Poller {
    /// A poller of `paths`, whose content in use is `initial`.
    pub(crate) fn new(paths: Vec<PathBuf>, initial: Vec<Vec<u8>>) -> Self {
        Self {
            paths,
            stamps: None,
            last: Seen::Content(initial),
            reads: 0,
        }
    }

    /// Look at the files once: what they hold (or why they cannot be read) when that differs from
    /// what was seen last, else `None`. Blocking.
    pub(crate) fn check(&mut self) -> Option<Read> {
        let now = SystemTime::now();
        let stamps = self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| Stamp::of(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>();
        let read = match stamps {
            Ok(stamps) if self.stamps.as_ref() == Some(&stamps) => return None,
            Ok(stamps) => {
                let read = self.read_all(&stamps);
                let trusted = read.is_ok() && stamps.iter().all(|s| s.settled(now));
                self.stamps = trusted.then_some(stamps);
                read
            }
            Err(e) => {
                self.stamps = None;
                Err(e)
            }
        };
        let seen = match &read {
            Ok(c) => Seen::Content(c.clone()),
            Err((i, e)) => Seen::Error(*i, e.kind()),
        };
        (seen != self.last).then(|| {
            self.last = seen;
            read
        })
    }

    /// How many times a file was read (not counting files refused by size).
    #[cfg(test)]
    fn reads(&self) -> u64 {
        self.reads
    }

    fn read_all(&mut self, stamps: &[Stamp]) -> Read {
        // Refuse by size before reading any of the files.
        if let Some(i) = stamps.iter().position(|s| s.len > MAX_FILE_BYTES) {
            return Err((i, too_large(Some(stamps[i].len))));
        }
        let mut contents = Vec::with_capacity(self.paths.len());
        for (i, p) in self.paths.iter().enumerate() {
            self.reads += 1;
            contents.push(read_capped(p).map_err(|e| (i, e))?);
        }
        Ok(contents)
    }
}

/// Poll `paths` every `interval` until `shutdown` stops; call `on_change` when what is read
/// differs from what was seen last (starting from `initial`, the content already in use).
pub(crate) async fn poll<F>(
    paths: Vec<PathBuf>,
    interval: Duration,
    initial: Vec<Vec<u8>>,
    shutdown: Shutdown,
    mut on_change: F,
) where
    F: FnMut(Read),
{
    let mut poller = Poller::new(paths, initial);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            () = shutdown.stopped() => return,
            _ = tick.tick() => {}
        }
        // `stat` and reads block: off the async workers.
        let checked = tokio::task::spawn_blocking(move || {
            let read = poller.check();
            (poller, read)
        })
        .await;
        let read;
        (poller, read) = match checked {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "file polling stopped");
                return;
            }
        };
        if let Some(read) = read {
            on_change(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, FileTimes};

    /// Write `content` to `path` through a new file renamed over it (as a deployment tool
    /// would), dated `age` ago.
    fn replace(path: &Path, content: &[u8], age: Duration) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        let then = SystemTime::now() - age;
        File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_times(FileTimes::new().set_modified(then).set_accessed(then))
            .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    const OLD: Duration = Duration::from_secs(3600);

    #[test]
    fn an_unchanged_file_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let content = vec![b'#'; 900 * 1024];
        replace(&path, &content, OLD);
        let mut p = Poller::new(vec![path.clone()], vec![content.clone()]);
        // The first look reads once (nothing known of the file yet), and finds no change.
        assert!(p.check().is_none());
        assert_eq!(p.reads(), 1);
        for _ in 0..10 {
            assert!(p.check().is_none());
        }
        assert_eq!(p.reads(), 1);
        // A new version is read, once.
        let mut new = content.clone();
        new[0] = b'x';
        replace(&path, &new, OLD);
        assert_eq!(p.check().unwrap().unwrap(), vec![new.clone()]);
        assert!(p.check().is_none());
        assert_eq!(p.reads(), 2);
    }

    #[test]
    fn a_recently_modified_file_is_read_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, b"a: 1\n").unwrap();
        let mut p = Poller::new(vec![path.clone()], vec![b"a: 1\n".to_vec()]);
        assert!(p.check().is_none());
        assert!(p.check().is_none());
        // Modified just now: a same-size change in the same timestamp tick could go unseen by
        // stat, so it is read each time.
        assert_eq!(p.reads(), 2);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_without_reading_it_and_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        replace(&path, b"a: 1\n", OLD);
        let mut p = Poller::new(vec![path.clone()], vec![b"a: 1\n".to_vec()]);
        assert!(p.check().is_none());
        let big = vec![b'#'; MAX_FILE_BYTES as usize + 1];
        replace(&path, &big, OLD);
        let (i, e) = p.check().unwrap().unwrap_err();
        assert_eq!((i, e.kind()), (0, io::ErrorKind::FileTooLarge));
        assert!(e.to_string().contains("1 MiB"), "{e}");
        assert!(e.to_string().contains("1048577 bytes"), "{e}");
        for _ in 0..5 {
            assert!(p.check().is_none());
        }
        assert_eq!(p.reads(), 1);
        // Back under the limit: read again.
        replace(&path, b"a: 2\n", OLD);
        assert_eq!(p.check().unwrap().unwrap(), vec![b"a: 2\n".to_vec()]);
    }

    #[test]
    fn read_capped_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(read_capped(&path).unwrap().len(), MAX_FILE_BYTES as usize);
        std::fs::write(&path, vec![0; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = read_capped(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            read_capped(&dir.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
