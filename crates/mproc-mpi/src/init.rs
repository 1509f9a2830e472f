//! [`init`]: where the ranks part. The fork server starts, then MPI on a thread of its
//! own; worker ranks serve and exit, rank 0 checks their builds and gets an [`Mpi`].

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::Threading;
use mpi::topology::{Communicator, Rank, SimpleCommunicator};

use crate::comm::{self, Backoff};
use crate::error::{Error, ErrorKind};
use crate::protocol::{ToRoot, ToWorker, decode, encode};
use crate::root::{self, Command};

/// How long rank 0 waits for every worker's hello.
const HELLO_LIMIT: Duration = Duration::from_secs(120);

/// Rank 0's handle on the MPI job: builds [`MpiPool`](crate::MpiPool)s. Keep it until the
/// end of `main`: dropping it stops the worker ranks (work still outstanding fails with
/// [`Terminated`](mproc_pool::ErrorKind::Terminated)) and finalizes MPI.
pub struct Mpi {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The way to the MPI thread; taken (`None`) when `Mpi` is dropped, so that no command
    /// can arrive after `Shutdown` and be lost with the channel.
    pub commands: Mutex<Option<mpsc::Sender<Command>>>,
    pub size: usize,
    pub host: String,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_pool: std::sync::atomic::AtomicU32,
}

impl Inner {
    pub(crate) fn command(&self, command: Command) -> bool {
        let tx = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref().is_some_and(|tx| tx.send(command).is_ok())
    }

    pub(crate) fn next_pool(&self) -> u32 {
        self.next_pool
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("size", &self.inner.size)
            .finish()
    }
}

impl Mpi {
    /// Returns the number of ranks, rank 0 included (`mpiexec -n N`: N).
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Returns the number of worker ranks (the ranks that run tasks): `size() - 1`.
    pub fn workers(&self) -> usize {
        self.inner.size - 1
    }

    /// Returns the name of rank 0's host.
    pub fn host(&self) -> &str {
        &self.inner.host
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        // Shutdown is the last command: the sender goes with it, and a pool used on another
        // thread meanwhile is told its work was terminated instead of sending it after.
        let tx = (self.inner.commands.lock())
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(Command::Shutdown);
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// What the MPI thread tells `init` once it knows this rank's part.
enum Ready {
    Worker,
    Root { size: usize, host: String },
    Failed(Error),
}

/// Starts mproc-mpi: call it right after `mproc::init()` at the top of `main`.
///
/// Every rank runs the code before it. On a worker rank (rank 1 and up) it serves rank 0's
/// tasks, each in a child of a local pool, and **exits the process** when rank 0 is done:
/// the code after it runs on rank 0 only, which gets an [`Mpi`] to build pools from. Run
/// outside `mpiexec`, the program is rank 0 of a job of one (MPI's singleton): `init`
/// returns an `Mpi` with no workers, whose pools refuse to start.
///
/// In order: mproc's fork server starts (so every local worker is a fork of a process
/// MPI never touched), MPI is initialised on a thread of its own that makes every MPI call
/// from then on (`MPI_THREAD_FUNNELED`), and the fork start method is refused in this
/// process ([`mproc_process::refuse_fork`]). Then each worker rank sends its build
/// fingerprint and host to rank 0, which checks them.
///
/// ```no_run
/// // no_run: the pool needs `mpiexec -n 3` (two worker ranks).
/// fn square(x: u64) -> u64 { x * x }
/// mproc_process::init();
/// let mpi = mproc_mpi::init()?; // worker ranks stay in here
/// let pool = mproc_mpi::MpiPool::new(&mpi)?;
/// assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`ErrorKind::Init`] when MPI was already initialised or lacks `MPI_THREAD_FUNNELED`, or
/// the fork server cannot start; [`ErrorKind::BuildMismatch`] naming the rank and host
/// of another build (every rank then ends); [`ErrorKind::Protocol`] when a worker's hello
/// is not one.
pub fn init() -> Result<Mpi, Error> {
    // MPI libraries do not survive fork(): pinned (registered) memory and progress threads
    // are not in the child, or are shared with it. The fork server is started now, before
    // MPI exists in this process, and every local worker is a fork of it.
    mproc_process::start_fork_server()
        .map_err(|e| Error::new(ErrorKind::Init, format!("mproc's fork server: {e}")))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (commands, command_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("mproc-mpi".into())
        .spawn(move || mpi_thread(ready_tx, command_rx))
        .map_err(|e| Error::new(ErrorKind::Init, format!("cannot start the MPI thread: {e}")))?;
    let ready = ready_rx.recv().unwrap_or_else(|_| {
        Ready::Failed(Error::new(
            ErrorKind::Init,
            "the MPI thread ended at start-up",
        ))
    });
    match ready {
        Ready::Worker => {
            let ok = thread.join().is_ok();
            // A worker rank's work is done: the code after init is rank 0's.
            std::process::exit(if ok { 0 } else { 1 })
        }
        Ready::Root { size, host } => Ok(Mpi {
            inner: Arc::new(Inner {
                commands: Mutex::new(Some(commands)),
                size,
                host,
                thread: Mutex::new(Some(thread)),
                next_pool: std::sync::atomic::AtomicU32::new(1),
            }),
        }),
        Ready::Failed(e) => {
            let _ = thread.join();
            Err(e)
        }
    }
}

/// The MPI thread: every MPI call of the process is made here, from init to finalize
/// (when `universe` drops at the end).
fn mpi_thread(ready: mpsc::Sender<Ready>, commands: mpsc::Receiver<Command>) {
    let Some((universe, provided)) = mpi::initialize_with_threading(Threading::Funneled) else {
        let e = Error::new(
            ErrorKind::Init,
            "MPI was already initialised in this process",
        );
        let _ = ready.send(Ready::Failed(e));
        return;
    };
    mproc_process::refuse_fork(
        "MPI is initialised (mproc-mpi), and MPI libraries do not survive fork()",
    );
    if provided < Threading::Funneled {
        let e = Error::new(
            ErrorKind::Init,
            format!("the MPI library provides {provided:?}, and mproc-mpi needs Funneled"),
        );
        let _ = ready.send(Ready::Failed(e));
        return;
    }
    let world = universe.world();
    if world.rank() != 0 {
        let _ = ready.send(Ready::Worker);
        if !crate::worker::serve(&world) {
            // A broken protocol: end the job rather than leave rank 0 waiting.
            world.abort(1);
        }
        return;
    }
    if let Err(e) = hellos(&world) {
        stop_after_failed_start(&world);
        let _ = ready.send(Ready::Failed(e));
        return;
    }
    let size = world.size() as usize;
    let _ = ready.send(Ready::Root {
        size,
        host: comm::host_name(),
    });
    mproc_pool::relay::mark_result_thread(result_thread());
    root::run(&world, commands);
}

/// The number that marks the MPI thread, where every pool's results are completed: the
/// address of a static, never 0 and never a local pool's (those are heap addresses).
pub(crate) fn result_thread() -> usize {
    static MARK: u8 = 0;
    &MARK as *const u8 as usize
}

/// Takes every worker's hello and checks its build.
fn hellos(world: &SimpleCommunicator) -> Result<(), Error> {
    let mine = mproc_sys::build_fingerprint();
    let mut left: Vec<Rank> = (1..world.size()).collect();
    let deadline = Instant::now() + HELLO_LIMIT;
    let mut backoff = Backoff::new();
    let mut mismatch = None;
    while !left.is_empty() {
        let Some((rank, bytes)) = comm::try_receive(world, None) else {
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("worker ranks {left:?} sent no hello in {HELLO_LIMIT:?}"),
                ));
            }
            backoff.idle();
            continue;
        };
        left.retain(|r| *r != rank);
        match decode::<ToRoot>(&bytes) {
            Some(ToRoot::Hello { fingerprint, host }) => {
                if fingerprint != mine && mismatch.is_none() {
                    mismatch = Some(Error::mismatch(rank, host));
                }
            }
            _ => {
                // A build whose hello does not even decode is another build too.
                mismatch.get_or_insert_with(|| Error::mismatch(rank, "(unknown)".into()));
            }
        }
    }
    mismatch.map_or(Ok(()), Err)
}

/// Stops every worker after a failed start (each said hello; each ends on `Stop`).
fn stop_after_failed_start(world: &SimpleCommunicator) {
    let stop = encode(&ToWorker::Stop);
    let mut arrived = Vec::new();
    let deadline = Instant::now() + HELLO_LIMIT;
    for rank in 1..world.size() {
        comm::send(world, rank, &stop, None, &mut arrived, Some(deadline));
    }
    let mut left: Vec<Rank> = (1..world.size()).collect();
    for (rank, b) in &arrived {
        if matches!(decode::<ToRoot>(b), Some(ToRoot::Bye)) {
            left.retain(|r| r != rank);
        }
    }
    let mut backoff = Backoff::new();
    while !left.is_empty() && Instant::now() < deadline {
        match comm::try_receive(world, None) {
            Some((rank, b)) if matches!(decode::<ToRoot>(&b), Some(ToRoot::Bye)) => {
                left.retain(|r| *r != rank);
            }
            Some(_) => {}
            None => backoff.idle(),
        }
    }
    if !left.is_empty() {
        // Finalizing MPI would wait for them for ever: end the job instead.
        eprintln!(
            "mproc-mpi: worker ranks {left:?} did not stop within {HELLO_LIMIT:?} after a failed start; aborting the MPI job"
        );
        world.abort(1);
    }
}
