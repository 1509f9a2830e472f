//! The watcher: a thread with an eye on every worker's process.
//!
//! It reports a worker's end on the pool's event queue (so the manager, asleep on that
//! queue, wakes at once); it kills a worker whose task runs past the pool's task timeout.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mproc_queue::Queue;

use crate::task::Event;
use crate::worker::Progress;

/// A worker the watcher waits for.
pub(crate) struct Watched {
    pub worker: u32,
    pub generation: u64,
    pub pidfd: OwnedFd,
    pub progress: Progress,
    /// The task the watcher killed this worker for, once it did.
    pub killed_for: Option<u64>,
}

/// The pool's side of the watcher thread: new workers to watch, and the stop flag.
pub(crate) struct Watcher {
    incoming: Mutex<(Vec<Watched>, bool)>,
    wake_tx: OwnedFd,
    wake_rx: OwnedFd,
}

impl Watcher {
    pub(crate) fn new() -> std::io::Result<Arc<Self>> {
        let (wake_tx, wake_rx) = mproc_sys::socketpair()?;
        Ok(Arc::new(Watcher {
            incoming: Mutex::new((Vec::new(), false)),
            wake_tx,
            wake_rx,
        }))
    }

    /// Starts watching a worker.
    pub(crate) fn add(&self, w: Watched) {
        self.lock().0.push(w);
        self.wake();
    }

    /// Asks the thread to end.
    pub(crate) fn stop(&self) {
        self.lock().1 = true;
        self.wake();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Watched>, bool)> {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        // One byte is enough, and never waited for: a full socket already holds a wake-up.
        let byte = [std::io::IoSlice::new(b"w")];
        let _ = mproc_sys::send_vectored_with_fds(self.wake_tx.as_fd(), &byte, &[], true);
    }

    /// The thread's body.
    pub(crate) fn run(&self, events: Queue<Event>, task_timeout: Option<Duration>) {
        let mut watched: Vec<Watched> = Vec::new();
        loop {
            {
                let mut incoming = self.lock();
                if incoming.1 {
                    return;
                }
                watched.append(&mut incoming.0);
            }
            let wait = task_timeout.map(|t| self.check_timeouts(&mut watched, t));
            let mut fds = vec![self.wake_rx.as_fd()];
            fds.extend(watched.iter().map(|w| w.pidfd.as_fd()));
            let Ok(ready) = mproc_sys::poll_readable(&fds, wait) else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if ready[0] {
                let mut buf = [0u8; 64];
                let _ =
                    mproc_sys::recv_with_fds(self.wake_rx.as_fd(), &mut buf, &mut Vec::new(), true);
            }
            let mut i = 0;
            watched.retain(|w| {
                i += 1;
                if !ready[i] {
                    return true;
                }
                let _ = events.put(Event::Exited {
                    worker: w.worker,
                    generation: w.generation,
                    timed_out: w.killed_for,
                });
                false
            });
        }
    }

    /// Kills the workers whose task ran past `timeout`; returns how long to wait before
    /// looking again (a task starting now is due in `timeout` at the earliest).
    fn check_timeouts(&self, watched: &mut [Watched], timeout: Duration) -> Duration {
        let limit = timeout.as_nanos().min(u128::from(u64::MAX)) as u64;
        let now = mproc_sys::monotonic_ns();
        let mut wait = limit;
        for w in watched.iter_mut().filter(|w| w.killed_for.is_none()) {
            let Some((seq, since)) = w.progress.running() else {
                continue;
            };
            let ran = now.saturating_sub(since);
            if ran >= limit {
                // Claim the task first: a worker that finished it meanwhile (and may have
                // started the next) keeps running.
                if w.progress.claim(since) {
                    let _ = mproc_sys::pidfd_send_signal(w.pidfd.as_fd(), mproc_sys::SIGKILL);
                    w.killed_for = Some(seq);
                }
            } else {
                wait = wait.min(limit - ran);
            }
        }
        Duration::from_nanos(wait.max(1_000_000))
    }
}
