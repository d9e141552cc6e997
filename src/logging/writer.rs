//! Log lines handed to a dedicated thread that writes them.
//!
//! A logging thread appends its finished line to a shared buffer (one copy, under a lock held
//! for that copy only) and wakes the writer thread only when it sleeps. Once woken, the writer
//! thread lets lines gather for [`GATHER`], then swaps the buffer for its own and writes
//! everything pending at once: under load a wake-up and a write(2) serve many lines. Not lossy:
//! past [`MAX_PENDING_BYTES`] the logging thread waits for the writer rather than drop audit
//! lines.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes waiting for the writer thread before logging threads wait: about 4,096 review lines.
pub const MAX_PENDING_BYTES: usize = 2 * 1024 * 1024;

/// A writer's buffer larger than this after a burst is given back.
const RETAINED_BATCH_BYTES: usize = 64 * 1024;

/// How long the writer thread lets lines gather after the first one wakes it: lines reach the
/// output at most this much later.
const GATHER: Duration = Duration::from_millis(1);

/// How long dropping the guard waits for the pending lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Appends lines for the writer thread; a [`MakeWriter`] for the layers.
#[derive(Debug, Clone)]
pub struct BackgroundWriter {
    shared: Arc<Shared>,
}

/// Flushes the pending lines and stops the writer thread when dropped (waiting at most a
/// second, so that a blocked output cannot hang the exit).
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines.
    lines: Condvar,
    /// Logging threads wait here for room, and the guard for the end.
    room: Condvar,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<u8>,
    writer_asleep: bool,
    waiting_for_room: usize,
    closed: bool,
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock but an allocation failure: the state stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BackgroundWriter {
    /// Start the writer thread, named `thread_name`, writing to `out`.
    pub fn spawn<W: Write + Send + 'static>(
        out: W,
        thread_name: &str,
    ) -> io::Result<(Self, LogGuard)> {
        let shared = Arc::new(Shared::default());
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || write_until_closed(&worker, out))?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogGuard { shared },
        ))
    }

    /// Queue `line` (one or more whole lines) for writing.
    pub fn append(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        while !state.pending.is_empty()
            && state.pending.len() + line.len() > MAX_PENDING_BYTES
            && !state.finished
        {
            state.waiting_for_room += 1;
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting_for_room -= 1;
        }
        if state.finished {
            // After the guard is dropped nothing writes: the line is lost, as the exit is near.
            return;
        }
        state.pending.extend_from_slice(line);
        let wake = std::mem::take(&mut state.writer_asleep);
        drop(state);
        if wake {
            self.shared.lines.notify_one();
        }
    }
}

/// The writer thread: write whatever is pending, at most once per [`GATHER`] unless logging
/// threads wait for room, until closed and drained.
fn write_until_closed(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.closed {
                state.writer_asleep = true;
                state = shared
                    .lines
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.writer_asleep = false;
            if !state.closed && state.waiting_for_room == 0 {
                drop(state);
                std::thread::sleep(GATHER);
                state = shared.lock();
            }
            if state.pending.is_empty() {
                state.finished = true;
                drop(state);
                shared.room.notify_all();
                return;
            }
            std::mem::swap(&mut state.pending, &mut batch);
            if state.waiting_for_room > 0 {
                shared.room.notify_all();
            }
        }
        // A failed write (closed stderr) loses this batch; later lines are still tried.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        batch.shrink_to(RETAINED_BATCH_BYTES);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.lines.notify_one();
        let _ = self
            .shared
            .room
            .wait_timeout_while(state, FLUSH_TIMEOUT, |s| !s.finished);
    }
}

/// One `write` of the fmt layer or of the JSON layer is one whole line.
#[derive(Debug)]
pub struct LineSink<'a>(&'a BackgroundWriter);

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BackgroundWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Records each write (one per batch), slowly, so that logging threads outrun it.
    #[derive(Clone, Default)]
    struct SlowOutput(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for SlowOutput {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(2));
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_in_order_and_the_backlog_is_bounded() {
        let out = SlowOutput::default();
        let (writer, guard) = BackgroundWriter::spawn(out.clone(), "test-log").unwrap();
        let line_len = 1000;
        let per_thread = 2 * MAX_PENDING_BYTES / line_len;
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let writer = writer.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        let mut line = format!("{t} {i} ").into_bytes();
                        line.resize(line_len - 1, b'x');
                        line.push(b'\n');
                        writer.make_writer().write_all(&line).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let batches = out.0.lock().unwrap();
        assert!(batches.iter().all(|b| b.len() <= MAX_PENDING_BYTES));
        let all: Vec<u8> = batches.concat();
        let text = std::str::from_utf8(&all).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            assert_eq!(line.len(), line_len - 1);
            let mut words = line.split(' ');
            let t: usize = words.next().unwrap().parse().unwrap();
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t}'s lines in order");
            next[t] += 1;
        }
        assert_eq!(next, [per_thread; 4]);
    }

    #[test]
    fn lines_after_the_guard_is_dropped_are_dropped_without_waiting() {
        let out = SlowOutput::default();
        let (writer, guard) = BackgroundWriter::spawn(out.clone(), "test-log").unwrap();
        writer.append(b"before\n");
        drop(guard);
        for _ in 0..3 {
            writer.append(&vec![b'x'; MAX_PENDING_BYTES]);
        }
        assert_eq!(out.0.lock().unwrap().concat(), b"before\n");
        assert!(writer.shared.lock().pending.is_empty());
    }

    /// Never finishes a write.
    struct StuckOutput(Mutex<mpsc::Receiver<()>>);

    impl Write for StuckOutput {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_does_not_hang_the_guard() {
        let (_never, rx) = mpsc::channel();
        let (writer, guard) =
            BackgroundWriter::spawn(StuckOutput(Mutex::new(rx)), "test-log").unwrap();
        writer.append(b"line\n");
        drop(guard);
    }
}
