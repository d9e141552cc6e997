//! Polling files by content (not by modification time), which follows every way files get
//! replaced: editors, `mv`, and the symlink swap of a Kubernetes Secret or ConfigMap volume.

use std::path::PathBuf;
use std::time::Duration;

use crate::shutdown::Shutdown;

/// What one poll read: every file's content, or the first file that could not be read.
pub(crate) type Read = Result<Vec<Vec<u8>>, (usize, std::io::Error)>;

#[derive(PartialEq, Eq)]
enum Seen {
    Content(Vec<Vec<u8>>),
    Error(usize, std::io::ErrorKind),
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
    let mut last = Seen::Content(initial);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            () = shutdown.stopped() => return,
            _ = tick.tick() => {}
        }
        let read = read_all(&paths).await;
        let seen = match &read {
            Ok(c) => Seen::Content(c.clone()),
            Err((i, e)) => Seen::Error(*i, e.kind()),
        };
        if seen != last {
            last = seen;
            on_change(read);
        }
    }
}

async fn read_all(paths: &[PathBuf]) -> Read {
    let mut contents = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        contents.push(tokio::fs::read(p).await.map_err(|e| (i, e))?);
    }
    Ok(contents)
}
