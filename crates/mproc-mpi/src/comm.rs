//! The MPI calls of mproc-mpi, all made on its one MPI thread: probing with a backoff
//! instead of busy polling, and sending while still taking in what arrives.

use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, Rank, SimpleCommunicator};

/// The largest message MPI's `int` count carries.
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

/// The wait between probes when nothing happens: from 20 µs, doubling up to 1 ms, back to
/// 20 µs on any activity (as mpi4py's pool does). An idle rank so wakes about a thousand
/// times a second, for a few µs each time, instead of taking a core.
#[derive(Debug)]
pub(crate) struct Backoff {
    wait: Duration,
}

const SHORTEST: Duration = Duration::from_micros(20);
const LONGEST: Duration = Duration::from_millis(1);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { wait: SHORTEST }
    }

    /// Something happened: the next wait is short again.
    pub(crate) fn reset(&mut self) {
        self.wait = SHORTEST;
    }

    /// Nothing happened: sleeps, and waits longer next time.
    pub(crate) fn idle(&mut self) {
        std::thread::sleep(self.next());
    }

    /// Nothing happened: how long to wait now (on a channel of this process's own, which
    /// a local event ends at once), doubling the next wait.
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.wait;
        self.wait = (self.wait * 2).min(LONGEST);
        wait
    }
}

/// Takes in a message waiting from `from` (any rank when `None`), if one is there.
pub(crate) fn try_receive(
    world: &SimpleCommunicator,
    from: Option<Rank>,
) -> Option<(Rank, Vec<u8>)> {
    let probed = match from {
        Some(rank) => world.process_at_rank(rank).immediate_matched_probe(),
        None => world.any_process().immediate_matched_probe(),
    };
    let (bytes, status) = probed?.matched_receive_vec::<u8>();
    Some((status.source_rank(), bytes))
}

/// Sends `bytes` to `to`. While a large message waits for its receiver, this takes in the
/// messages that arrive from `from` into `arrived`: two ranks sending to each other at
/// once never wait for each other. `bytes` must be at most [`MAX_MESSAGE`] long.
///
/// With `give_up`, a send still pending at that instant aborts the MPI job (an MPI send
/// cannot be withdrawn once posted): for the sends of an ending, whose receiver may have
/// stopped listening. Without it the send waits for its receiver, which during the pool's
/// life always listens while it waits (or MPI ends the job when it dies).
pub(crate) fn send(
    world: &SimpleCommunicator,
    to: Rank,
    bytes: &[u8],
    from: Option<Rank>,
    arrived: &mut Vec<(Rank, Vec<u8>)>,
    give_up: Option<Instant>,
) {
    let mut backoff = Backoff::new();
    mpi::request::scope(|scope| {
        let mut request = world.process_at_rank(to).immediate_send(scope, bytes);
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => request = pending,
            }
            if give_up.is_some_and(|t| Instant::now() > t) {
                eprintln!(
                    "mproc-mpi: rank {to} took no message for too long; aborting the MPI job"
                );
                world.abort(1);
            }
            match try_receive(world, from) {
                Some(m) => {
                    arrived.push(m);
                    backoff.reset();
                }
                None => backoff.idle(),
            }
        }
    });
}

/// Returns this host's name, as MPI knows it.
pub(crate) fn host_name() -> String {
    mpi::environment::processor_name().unwrap_or_else(|_| "(unknown host)".into())
}
