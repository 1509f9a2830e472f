//! Rank 0's MPI thread: takes the pools' jobs from a channel, sends them to the worker
//! ranks (to the least loaded, a bounded number in flight on each) and completes their
//! outcomes; at the end, stops every worker and waits for its goodbye.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use mpi::topology::{Communicator, Rank, SimpleCommunicator};
use mproc_pool::ErrorKind;
use mproc_pool::relay::{RelayError, RelayJob, RelayOutcome};

use crate::comm::{self, Backoff, MAX_MESSAGE};
use crate::protocol::{ToRoot, ToWorker, decode, encode};

/// What the pools ask of the MPI thread.
pub(crate) enum Command {
    Open {
        pool: u32,
        processes: u32,
        task_timeout: Option<Duration>,
    },
    Jobs {
        pool: Arc<PoolShared>,
        jobs: Vec<RelayJob>,
    },
    /// Fail the pool's work not yet done, and end its local pools.
    Terminate { pool: u32 },
    /// End the pool's local pools (its work is done).
    ClosePool { pool: u32 },
    /// Cancel the pool's tasks not yet sent to a rank (an executor's `cancel_futures`);
    /// `done` hears when they are.
    CancelPending {
        pool: u32,
        done: Option<mpsc::Sender<()>>,
    },
    /// Stop every worker rank and end the thread.
    Shutdown,
}

/// What a pool and the MPI thread share: whether it takes work, how much is outstanding.
#[derive(Debug)]
pub(crate) struct PoolShared {
    pub id: u32,
    pub state: Mutex<PoolState>,
    pub changed: Condvar,
}

#[derive(Debug, Default)]
pub(crate) struct PoolState {
    pub closed: bool,
    pub outstanding: usize,
}

impl PoolShared {
    /// Counts `n` jobs that never reached the MPI thread as done.
    pub(crate) fn finished_externally(&self, n: usize) {
        self.finished(n);
    }

    fn finished(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.outstanding = st.outstanding.saturating_sub(n);
        drop(st);
        self.changed.notify_all();
    }
}

/// How long rank 0 waits for the workers' goodbyes when it stops them.
const BYE_LIMIT: Duration = Duration::from_secs(30);

struct Entry {
    job: RelayJob,
    pool: Arc<PoolShared>,
}

impl Entry {
    fn complete(self, outcome: RelayOutcome) {
        self.job.complete(outcome);
        self.pool.finished(1);
    }
}

struct Root<'w> {
    world: &'w SimpleCommunicator,
    workers: Vec<Rank>,
    pending: VecDeque<Entry>,
    in_flight: HashMap<Rank, HashMap<u64, Entry>>,
    next_id: u64,
    /// The most tasks a worker rank holds at once: `IN_FLIGHT_PER_PROCESS` times its
    /// largest local pool.
    limit: usize,
    arrived: Vec<(Rank, Vec<u8>)>,
}

/// Tasks in flight per local worker process of a rank: enough that a worker never waits
/// for its next task through rank 0's and its own probe intervals (a round trip of up to
/// two of them), few enough that a slow task holds back only a few others queued behind it
/// on its rank (`mpi_pool_tasks_per_s.chunksize1` measures the difference).
const IN_FLIGHT_PER_PROCESS: usize = 8;

/// Runs rank 0's MPI thread until [`Command::Shutdown`] (or every pool handle is gone).
pub(crate) fn run(world: &SimpleCommunicator, commands: mpsc::Receiver<Command>) {
    let mut root = Root {
        world,
        workers: (1..world.size()).collect(),
        pending: VecDeque::new(),
        in_flight: HashMap::new(),
        next_id: 0,
        limit: IN_FLIGHT_PER_PROCESS,
        arrived: Vec::new(),
    };
    let mut backoff = Backoff::new();
    loop {
        let mut active = false;
        let mut shutdown = false;
        loop {
            match commands.try_recv() {
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
                Ok(command) => {
                    active = true;
                    root.command(command);
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if shutdown {
            break;
        }
        active |= root.dispatch();
        while let Some(m) = comm::try_receive(world, None) {
            root.arrived.push(m);
        }
        active |= root.take_arrived();
        if active {
            backoff.reset();
        } else {
            // A user's call ends the wait at once; a worker's message waits for the next
            // probe.
            match commands.recv_timeout(backoff.next()) {
                Ok(Command::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(command) => {
                    backoff.reset();
                    root.command(command);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
    // `Mpi::drop` took the sender before it sent `Shutdown`: what is still in the channel
    // is all there will be. Its jobs fail with the rest in `stop_workers`.
    for command in commands.try_iter() {
        if matches!(command, Command::Jobs { .. } | Command::Terminate { .. }) {
            root.command(command);
        }
    }
    root.stop_workers();
}

impl Root<'_> {
    fn command(&mut self, command: Command) {
        match command {
            Command::Open {
                pool,
                processes,
                task_timeout,
            } => {
                self.limit = self
                    .limit
                    .max(IN_FLIGHT_PER_PROCESS * processes.max(1) as usize);
                self.broadcast(
                    &ToWorker::Open {
                        pool,
                        processes,
                        task_timeout,
                    },
                    None,
                );
            }
            Command::Jobs { pool, jobs } => {
                self.pending.extend(jobs.into_iter().map(|job| Entry {
                    job,
                    pool: pool.clone(),
                }))
            }
            Command::Terminate { pool } => {
                self.fail_where(|e| e.pool.id == pool, &terminated());
                self.broadcast(&ToWorker::ClosePool { pool }, None);
            }
            Command::ClosePool { pool } => self.broadcast(&ToWorker::ClosePool { pool }, None),
            Command::CancelPending { pool, done } => {
                self.cancel_pending(pool);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Shutdown => {}
        }
    }

    /// Sends pending jobs to the least loaded worker ranks with room. Returns whether it
    /// sent (or dropped) any.
    fn dispatch(&mut self) -> bool {
        let mut any = false;
        while let Some(entry) = self.pending.pop_front() {
            if entry.job.is_cancelled() {
                any = true;
                // The call has its outcome already: nobody waits for this chunk.
                entry.pool.finished(1);
                continue;
            }
            let least = self
                .workers
                .iter()
                .map(|r| (self.in_flight.get(r).map_or(0, HashMap::len), *r))
                .min();
            let Some((_, rank)) = least.filter(|(load, _)| *load < self.limit) else {
                self.pending.push_front(entry);
                return any;
            };
            any = true;
            if !entry.job.begin() {
                // Cancelled meanwhile (a submitted task's `cancel`): it has its outcome.
                entry.pool.finished(1);
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let message = ToWorker::Task {
                pool: entry.pool.id,
                id,
                task: entry.job.task.clone(),
            };
            let bytes = encode(&message);
            if bytes.len() > MAX_MESSAGE {
                entry.complete(Err(RelayError::new(
                    ErrorKind::Encode,
                    "the task's arguments are larger than an MPI message (2 GiB)",
                )));
                continue;
            }
            comm::send(self.world, rank, &bytes, None, &mut self.arrived, None);
            self.in_flight.entry(rank).or_default().insert(id, entry);
        }
        any
    }

    /// Handles the messages that arrived. Returns whether there were any.
    fn take_arrived(&mut self) -> bool {
        let arrived = std::mem::take(&mut self.arrived);
        let any = !arrived.is_empty();
        for (rank, bytes) in arrived {
            match decode::<ToRoot>(&bytes) {
                Some(ToRoot::Done { id, outcome }) => {
                    // An unknown id is a task failed meanwhile (its pool terminated).
                    if let Some(entry) = self.in_flight.get_mut(&rank).and_then(|m| m.remove(&id)) {
                        entry.complete(outcome);
                    }
                }
                Some(ToRoot::Hello { .. } | ToRoot::Bye) | None => {
                    eprintln!("mproc-mpi: rank {rank} sent a message out of turn; it is ignored")
                }
            }
        }
        any
    }

    /// Cancels the pool's cancellable jobs that wait here; what could not be cancelled
    /// (a map's chunks) stays in line.
    fn cancel_pending(&mut self, pool: u32) {
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for entry in self.pending.drain(..) {
            if entry.pool.id == pool {
                entry.job.cancel_pending();
                if entry.job.is_cancelled() {
                    entry.pool.finished(1);
                    continue;
                }
            }
            kept.push_back(entry);
        }
        self.pending = kept;
    }

    fn fail_where(&mut self, which: impl Fn(&Entry) -> bool, error: &RelayError) {
        let (fail, keep): (Vec<Entry>, Vec<Entry>) = self.pending.drain(..).partition(&which);
        self.pending = keep.into();
        let mut failed = fail;
        for tasks in self.in_flight.values_mut() {
            let ids: Vec<u64> = tasks
                .iter()
                .filter(|(_, e)| which(e))
                .map(|(i, _)| *i)
                .collect();
            failed.extend(ids.into_iter().filter_map(|i| tasks.remove(&i)));
        }
        for entry in failed {
            entry.complete(Err(error.clone()));
        }
    }

    fn broadcast(&mut self, message: &ToWorker, give_up: Option<Instant>) {
        let bytes = encode(message);
        for rank in self.workers.clone() {
            comm::send(self.world, rank, &bytes, None, &mut self.arrived, give_up);
        }
    }

    /// Fails what is left, tells every worker to stop and waits for each goodbye (the
    /// messages a worker sent before it go unread no more: MPI finalizes cleanly).
    fn stop_workers(mut self) {
        self.fail_where(|_| true, &terminated());
        let deadline = Instant::now() + BYE_LIMIT;
        self.broadcast(&ToWorker::Stop, Some(deadline));
        let mut left: Vec<Rank> = self.workers.clone();
        let mut backoff = Backoff::new();
        for (rank, bytes) in std::mem::take(&mut self.arrived) {
            if matches!(decode::<ToRoot>(&bytes), Some(ToRoot::Bye)) {
                left.retain(|r| *r != rank);
            }
        }
        while !left.is_empty() {
            match comm::try_receive(self.world, None) {
                Some((rank, bytes)) => {
                    if matches!(decode::<ToRoot>(&bytes), Some(ToRoot::Bye)) {
                        left.retain(|r| *r != rank);
                    }
                }
                None if Instant::now() > deadline => {
                    eprintln!(
                        "mproc-mpi: worker ranks {left:?} did not end in {BYE_LIMIT:?}; \
                         aborting the MPI job"
                    );
                    mpi::topology::Communicator::abort(self.world, 1);
                }
                None => backoff.idle(),
            }
        }
    }
}

pub(crate) fn terminated() -> RelayError {
    RelayError::new(
        ErrorKind::Terminated,
        "the pool was terminated before the task finished",
    )
}
