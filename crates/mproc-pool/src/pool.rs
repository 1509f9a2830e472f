//! [`Pool`], Python's `multiprocessing.Pool`: the pool itself, from its threads to its end
//! (`close`, `terminate`, `join`). The calls that give it work live in `pool/`, one family
//! a file; its options in `pool/builder.rs`.

mod apply;
pub(crate) mod builder;
mod imap;
mod map;
mod submit;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::manager::{Phase, Shared, on_manager_of, reentrant_wait};
use builder::Builder;

/// A pool of worker processes that run functions on many inputs: Python's
/// `multiprocessing.Pool`.
///
/// Functions are plain `fn` items (or closures that capture nothing); arguments and
/// results are serde types. Work travels to the workers and back through queues in shared
/// memory. A panic fails its task (with the message); a worker that dies mid-task
/// (SIGKILL, abort, the OOM killer) fails that task with [`ErrorKind::WorkerDied`], is
/// replaced, and the rest of the work goes on: the pool never hangs on a dead worker.
///
/// Dropping a pool terminates it, as leaving Python's `with Pool() as p:` block does: work
/// still outstanding fails with [`ErrorKind::Terminated`], and every worker is killed and
/// reaped before `drop` returns. Call [`close`](Self::close) and [`join`](Self::join) to
/// let the work finish instead. Workers also die with their parent, even on SIGKILL.
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
/// # mproc_process::init();
/// let pool = mproc_pool::Pool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// # Ok::<(), mproc_pool::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("phase", &self.shared.lock().phase)
            .finish()
    }
}

impl Pool {
    /// Starts a pool of `processes` workers with the default options: Python's
    /// `Pool(processes)`.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Builder::new().processes(processes).build()
    }

    /// Returns a [`Builder`] for the other options.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Returns the number of workers.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// Starts the watcher and the manager thread (which starts the first workers when
    /// `starts_first_workers`); returns how that went.
    fn spawn_threads(&self) -> Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let watcher = self.shared.watcher.clone();
        let events = self.shared.events.clone();
        let timeout = self.shared.config.task_timeout;
        let w = std::thread::Builder::new()
            .name("mproc-pool-watcher".into())
            .spawn(move || watcher.run(events, timeout));
        let shared = self.shared.clone();
        let start_first = shared.starts_first_workers();
        let (ready, started) = std::sync::mpsc::channel();
        let m = std::thread::Builder::new()
            .name("mproc-pool-manager".into())
            .spawn(move || {
                // A bug in the manager must not leave workers running or joins waiting.
                if mproc_process::catch_panic(|| shared.run_manager(start_first, ready)).is_err() {
                    shared.terminate();
                    shared.reap_all();
                }
            });
        let no_thread = |e: std::io::Error| {
            Error::new(ErrorKind::Start, "cannot start the pool's threads").with_source(e)
        };
        match (w, m) {
            (Ok(w), Ok(m)) => threads.extend([w, m]),
            (w, m) => {
                // Without its threads the pool cannot work: end it here, reaping workers.
                let e = [w.as_ref().err(), m.as_ref().err()]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(|e| no_thread(std::io::Error::new(e.kind(), e.to_string())));
                threads.extend(w.ok().into_iter().chain(m.ok()));
                self.shared.terminate();
                self.shared.reap_all();
                return Err(e.unwrap_or_else(|| Error::new(ErrorKind::Start, "no pool thread")));
            }
        }
        if !start_first {
            return Ok(());
        }
        started.recv().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Start,
                "the pool's manager thread ended before starting the workers",
            ))
        })
    }

    /// Stops taking work: what was submitted still runs, then the workers end (Python's
    /// `close`). Call [`join`](Self::join) to wait for them.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Fails the work still outstanding with [`ErrorKind::Terminated`] and kills the
    /// workers at once (Python's `terminate`), waiting until every one has been reaped.
    pub fn terminate(&self) {
        self.shared.terminate();
        if on_manager_of(self.shared.id()) {
            // From one of this pool's callbacks: the manager ends once this returns.
            return;
        }
        self.shared.wait_ended(None);
        self.join_threads();
    }

    /// Waits until the workers have ended, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate): Python's `join`.
    ///
    /// ```
    /// fn double(x: u8) -> u8 { x * 2 }
    /// # mproc_process::init();
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let pending = pool.map_async(double, [1, 2, 3])?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(pending.get()?, [2, 4, 6]);
    /// # Ok::<(), mproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] when the pool was neither closed nor terminated.
    pub fn join(&self) -> Result<()> {
        self.join_until(None)
    }

    /// Like [`join`](Self::join), giving up after `timeout` with [`ErrorKind::Timeout`]
    /// (the pool goes on; join again later).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), and [`ErrorKind::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(mproc_sys::deadline_after(timeout))
    }

    fn join_until(&self, deadline: Option<std::time::Instant>) -> Result<()> {
        if on_manager_of(self.shared.id()) {
            return Err(reentrant_wait());
        }
        if self.shared.lock().phase == Phase::Running {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "join needs close() or terminate() first",
            ));
        }
        if !self.shared.wait_ended(deadline) {
            return Err(Error::new(
                ErrorKind::Timeout,
                "timed out waiting for the workers to end; join again later",
            ));
        }
        self.join_threads();
        Ok(())
    }

    /// Joins the pool's threads, which have ended or are ending: a pool that was joined
    /// leaves no thread behind (the fork start method refuses a process with threads).
    fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// The bookkeeping shared with the manager thread.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
