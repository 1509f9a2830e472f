//! A worker rank: says hello, then runs rank 0's tasks in local pools until told to stop.

use std::collections::HashMap;
use std::sync::mpsc;

use mpi::topology::{Rank, SimpleCommunicator};
use mproc_pool::relay::{RelayError, RelayOutcome};
use mproc_pool::{ErrorKind, Pool};
use mproc_process::StartMethod;

use crate::comm::{self, Backoff, MAX_MESSAGE};
use crate::protocol::{ToRoot, ToWorker, decode, encode};

const ROOT: Rank = 0;

/// Serves rank 0 until it says `Stop`. Returns whether the worker ended in order.
pub(crate) fn serve(world: &SimpleCommunicator) -> bool {
    let mut arrived = Vec::new();
    let hello = ToRoot::Hello {
        fingerprint: mproc_sys::build_fingerprint(),
        host: comm::host_name(),
    };
    comm::send(world, ROOT, &encode(&hello), Some(ROOT), &mut arrived, None);
    let mut pools: HashMap<u32, Result<Pool, RelayError>> = HashMap::new();
    let (done_tx, done_rx) = mpsc::channel::<(u64, RelayOutcome)>();
    let mut backoff = Backoff::new();
    // A task's outcome that ended an idle wait, sent back first in the next round.
    let mut woken: Option<(u64, RelayOutcome)> = None;
    let in_order = 'serve: loop {
        let mut active = false;
        if let Some(m) = comm::try_receive(world, Some(ROOT)) {
            arrived.push(m);
        }
        for (_, bytes) in std::mem::take(&mut arrived) {
            active = true;
            match decode::<ToWorker>(&bytes) {
                Some(ToWorker::Stop) => break 'serve true,
                Some(ToWorker::Open {
                    pool,
                    processes,
                    task_timeout,
                }) => {
                    pools.insert(pool, open(processes, task_timeout));
                }
                Some(ToWorker::Task { pool, id, task }) => match pools.get(&pool) {
                    Some(Ok(local)) => {
                        let tx = done_tx.clone();
                        // `relay` hands the outcome (an error too) to the callback once.
                        let _ = local.relay(task, move |outcome| {
                            let _ = tx.send((id, outcome));
                        });
                    }
                    Some(Err(e)) => {
                        let _ = done_tx.send((id, Err(e.clone())));
                    }
                    None => {
                        let e = RelayError::new(ErrorKind::Closed, "the rank has no such pool");
                        let _ = done_tx.send((id, Err(e)));
                    }
                },
                Some(ToWorker::ClosePool { pool }) => {
                    // Dropping a local pool terminates it and reaps its children.
                    drop(pools.remove(&pool));
                }
                None => {
                    eprintln!("mproc-mpi: a worker rank got a message that is not one; ending");
                    break 'serve false;
                }
            }
        }
        for (id, outcome) in woken.take().into_iter().chain(done_rx.try_iter()) {
            active = true;
            let mut bytes = encode(&ToRoot::Done { id, outcome });
            if bytes.len() > MAX_MESSAGE {
                let e = RelayError::new(
                    ErrorKind::Encode,
                    "the task's results are larger than an MPI message (2 GiB)",
                );
                bytes = encode(&ToRoot::Done {
                    id,
                    outcome: Err(e),
                });
            }
            comm::send(world, ROOT, &bytes, Some(ROOT), &mut arrived, None);
        }
        if active || !arrived.is_empty() {
            backoff.reset();
        } else {
            // A finished task ends the wait at once; a message from rank 0 waits for the
            // next probe.
            woken = done_rx.recv_timeout(backoff.next()).ok();
        }
    };
    drop(pools);
    comm::send(
        world,
        ROOT,
        &encode(&ToRoot::Bye),
        None,
        &mut Vec::new(),
        None,
    );
    in_order
}

/// Starts a local pool for rank 0's pool: its children start by the forkserver method
/// (the fork server was started before MPI; fork is refused after it).
fn open(processes: u32, task_timeout: Option<std::time::Duration>) -> Result<Pool, RelayError> {
    let method = match mproc_process::get_start_method() {
        StartMethod::Fork => StartMethod::ForkServer,
        m => m,
    };
    let mut builder = Pool::builder()
        .processes(processes.max(1) as usize)
        .start_method(method);
    if let Some(t) = task_timeout {
        builder = builder.task_timeout(t);
    }
    builder.build().map_err(|e| RelayError::from(&e))
}
