//! The reaper: a thread that shuts down the server's end of a local caller's connections once
//! the caller's process ends (watched through a pidfd).
//!
//! A connection alone does not tell when its process is gone: a child forked by that
//! process holds a copy of the socket open. Shutting the server's end down wakes the
//! connection's thread with an end of stream, wherever it waits (reading the next request,
//! or in a blocking operation, which polls the socket), and the session ends as if the
//! process had closed it.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often the reaper picks up connections that arrived since it last looked.
const RESCAN: Duration = Duration::from_millis(100);

struct Watched {
    id: u64,
    pidfd: Arc<OwnedFd>,
    /// A duplicate of the server's end, to shut down.
    sock: UnixStream,
}

/// The connections being watched, and the thread that watches them.
#[derive(Default)]
pub(crate) struct Reaper {
    watched: Mutex<Vec<Watched>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reaper {
    /// Starts the reaper's thread.
    pub(crate) fn start() -> Arc<Self> {
        let reaper = Arc::new(Reaper::default());
        let r = Arc::clone(&reaper);
        // Without the thread, processes that die with a forked child alive keep their
        // sessions until the child ends too: worse, but not wrong.
        let _ = std::thread::Builder::new()
            .name("mproc-manager-reaper".into())
            .stack_size(64 << 10)
            .spawn(move || r.run());
        reaper
    }

    /// Watches connection `id`, whose server end is `sock`, if its peer is a local process.
    pub(crate) fn watch(&self, id: u64, sock: impl AsFd) {
        let sock = sock.as_fd();
        let Ok(pidfd) = mproc_sys::peer_pid(sock).and_then(mproc_sys::pidfd_open) else {
            return; // a TCP peer, or a process in another pid namespace
        };
        let Ok(dup) = sock.try_clone_to_owned() else {
            return;
        };
        lock(&self.watched).push(Watched {
            id,
            pidfd: Arc::new(pidfd),
            sock: UnixStream::from(dup),
        });
    }

    /// Stops watching connection `id` (it ended).
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.watched).retain(|w| w.id != id);
    }

    fn run(&self) {
        loop {
            let pidfds: Vec<(u64, Arc<OwnedFd>)> = lock(&self.watched)
                .iter()
                .map(|w| (w.id, Arc::clone(&w.pidfd)))
                .collect();
            let fds: Vec<_> = pidfds.iter().map(|(_, p)| p.as_fd()).collect();
            let ready = match mproc_sys::poll_readable(&fds, Some(RESCAN)) {
                Ok(ready) => ready,
                Err(_) => {
                    std::thread::sleep(RESCAN);
                    continue;
                }
            };
            let ended: Vec<u64> = pidfds
                .iter()
                .zip(ready)
                .filter(|(_, r)| *r)
                .map(|((id, _), _)| *id)
                .collect();
            if ended.is_empty() {
                continue;
            }
            let mut watched = lock(&self.watched);
            for w in watched.iter().filter(|w| ended.contains(&w.id)) {
                let _ = w.sock.shutdown(std::net::Shutdown::Both);
            }
            watched.retain(|w| !ended.contains(&w.id));
        }
    }
}
