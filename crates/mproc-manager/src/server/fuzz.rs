//! The entry point of the fuzz target (built with `cfg(fuzzing)` only): the requests of one
//! connection, from any bytes, read and served as the server reads and serves them.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Caller, Limits, Server, reaper::Reaper};
use crate::protocol::{Op, Reply, Request, Wait};
use crate::registry::SharedObject;
use crate::registry::sealed::Sealed;

/// What the owner's `Shutdown` carries in the fuzzed server.
pub const OWNER_TOKEN: u64 = 0x5eed;

/// A registered type for the fuzzed server: requests and initial values of a user's type
/// come from the peer too.
struct Tally(Vec<i32>);

#[derive(Serialize, Deserialize)]
enum TallyCall {
    Add(i32),
    Sum,
    Items,
}

impl SharedObject for Tally {
    const NAME: &'static str = "tally";
    type Init = Vec<i32>;
    type Request = TallyCall;
    type Response = (i64, Vec<i32>);
    fn new(init: Vec<i32>) -> Self {
        Tally(init)
    }
    fn handle(&mut self, call: TallyCall) -> (i64, Vec<i32>) {
        let sum = self.0.iter().map(|&x| i64::from(x)).sum();
        match call {
            TallyCall::Add(x) => {
                self.0.push(x);
                (sum, Vec::new())
            }
            TallyCall::Sum => (sum, Vec::new()),
            TallyCall::Items => (sum, self.0.clone()),
        }
    }
}

/// A registered type whose calls are recursive: a peer chooses how deep they nest.
struct Depth;

#[derive(Serialize, Deserialize)]
enum DepthCall {
    Here,
    Deeper(Box<DepthCall>),
}

impl SharedObject for Depth {
    const NAME: &'static str = "depth";
    type Init = u8;
    type Request = DepthCall;
    type Response = u64;
    fn new(_: u8) -> Self {
        Depth
    }
    fn handle(&mut self, mut call: DepthCall) -> u64 {
        let mut depth = 0;
        while let DepthCall::Deeper(inner) = call {
            call = *inner;
            depth += 1;
        }
        depth
    }
}

/// Serves a connection whose peer sent `stream` and closed: the requests are read with a
/// limit of `max_message` bytes, as the server reads them, and served by a new server (a
/// peer that does not start with a hello is dropped, as the server drops it), in a thread
/// with the stack of a connection's thread. A request that would wait waits not at all: a
/// wait is a matter of time, not of decoding. Returns the length of each reply, encoded as
/// the server sends it.
pub fn serve_bytes(stream: &[u8], max_message: u64) -> Vec<usize> {
    type Job = (Vec<u8>, u64);
    /// Where jobs go to the connection thread, and where its replies come back.
    type Worker = (Sender<Job>, Receiver<Vec<usize>>);
    // One thread for every input: starting a thread per input would cost more than the
    // serving. A panic or stack overflow in it aborts the process, which libFuzzer reports.
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (jobs, job) = mpsc::channel::<Job>();
        let (replies, reply) = mpsc::channel();
        std::thread::Builder::new()
            .name("mproc-manager-conn".into())
            .stack_size(super::THREAD_STACK)
            .spawn(move || {
                for (stream, max_message) in job {
                    if replies.send(serve_in_thread(&stream, max_message)).is_err() {
                        break;
                    }
                }
            })
            .expect("starting the connection thread");
        Mutex::new((jobs, reply))
    });
    let worker = worker.lock().unwrap_or_else(PoisonError::into_inner);
    worker
        .0
        .send((stream.to_vec(), max_message))
        .expect("the connection thread is gone");
    worker.1.recv().expect("the connection thread is gone")
}

fn serve_in_thread(stream: &[u8], max_message: u64) -> Vec<usize> {
    let Ok((mut conn, peer)) = mproc_pipe::duplex::<Reply, Request>() else {
        return Vec::new();
    };
    conn.set_max_message(max_message);
    // As much as the socket takes; then the peer is gone.
    let _ = mproc_sys::send_vectored_with_fds(peer.as_fd(), &[IoSlice::new(stream)], &[], true);
    drop(peer);
    let Ok(caller_fd) = conn.as_fd().try_clone_to_owned() else {
        return Vec::new();
    };
    let caller = Caller {
        fd: caller_fd.as_fd(),
    };
    let server = Server::new(
        Limits {
            max_message,
            max_connections: 1,
        },
        OWNER_TOKEN,
        <(Tally, Depth) as Sealed>::create,
        Arc::new(Reaper::default()),
    );
    let mut replies = Vec::new();
    let session = match conn.try_recv() {
        Ok(Some(Request::Hello { session })) => session,
        _ => return replies,
    };
    *super::lock(&server.sessions).entry(session).or_default() += 1;
    // Garbage, an oversized frame or the end: the server is done with this client.
    while let Ok(Some(request)) = conn.try_recv() {
        let reply = server.handle(no_waiting(request), &caller);
        replies.extend(postcard::to_stdvec(&reply).map(|bytes| bytes.len()));
    }
    server.leave(session);
    replies
}

/// The request, with every wait in it made a wait of none.
fn no_waiting(request: Request) -> Request {
    let Request::Op { id, op } = request else {
        return request;
    };
    let no = Wait::No;
    let op = match op {
        Op::Put(item, _) => Op::Put(item, no),
        Op::Take(_) => Op::Take(no),
        Op::Join(_) => Op::Join(no),
        Op::Acquire(owner, _) => Op::Acquire(owner, no),
        Op::CondWait(owner, _) => Op::CondWait(owner, no),
        Op::EventWait(_) => Op::EventWait(no),
        Op::BarrierWait(owner, _) => Op::BarrierWait(owner, no),
        op => op,
    };
    Request::Op { id, op }
}
