//! Taking in what the event queue brings: a chunk's results, a failed initializer, a
//! worker's end.

use std::time::Instant;

use super::{Config, Deliveries, State};
use crate::error::{Error, ErrorKind};
use crate::sink::Delivery;
use crate::task::{ChunkFailure, ChunkOutcome, Event};

impl State {
    pub(super) fn handle(
        &mut self,
        ev: Event,
        config: &Config,
        deliveries: &mut Deliveries,
        restart: &mut Vec<usize>,
    ) {
        match ev {
            Event::Done {
                worker,
                seq,
                outcome,
            } => self.done(worker as usize, seq, outcome, deliveries),
            Event::InitFailed { message, .. } => {
                if self.broken.is_none() {
                    self.broken = Some(Error::new(
                        ErrorKind::Initializer,
                        format!("the pool's initializer failed in a worker: {message}"),
                    ));
                }
            }
            Event::Exited {
                worker,
                generation,
                timed_out,
            } => {
                let index = worker as usize;
                if timed_out == Some(0) && self.broken.is_none() {
                    // Task 0 is the initializer.
                    let limit = config.task_timeout.unwrap_or_default();
                    self.broken = Some(Error::new(
                        ErrorKind::Initializer,
                        format!("the pool's initializer ran past the task timeout of {limit:?}"),
                    ));
                }
                if self
                    .slots
                    .get(index)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.exited(index, timed_out, config, deliveries);
                    if self.wants_worker() && !config.on_demand {
                        restart.push(index);
                    }
                }
            }
            Event::Unreadable {
                worker,
                after,
                message,
            } => {
                let Some(slot) = self.slots.get_mut(worker as usize) else {
                    return;
                };
                if let Some(pos) = slot.in_flight.iter().position(|f| f.seq > after)
                    && let Some(lost) = slot.in_flight.remove(pos)
                {
                    let e = Error::new(
                        ErrorKind::Decode,
                        format!("the task could not be read by its worker: {message}"),
                    );
                    deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
                }
            }
            Event::Wake => {}
            Event::Resync => {
                // An event may have been lost: a worker that ended is found by its pidfd.
                for index in 0..self.slots.len() {
                    let slot = &self.slots[index];
                    if slot.child.as_ref().is_some_and(|c| !c.is_alive()) {
                        self.exited(index, None, config, deliveries);
                        if self.wants_worker() && !config.on_demand {
                            restart.push(index);
                        }
                    }
                }
            }
        }
    }

    fn done(
        &mut self,
        worker: usize,
        seq: u64,
        outcome: ChunkOutcome,
        deliveries: &mut Deliveries,
    ) {
        let Some(slot) = self.slots.get_mut(worker) else {
            return;
        };
        let Some(pos) = slot.in_flight.iter().position(|f| f.seq == seq) else {
            return; // a chunk already failed (terminate) or not ours
        };
        // A worker runs its queue in order: chunks before this one whose results never
        // came were lost on the way (an event queue failure): they fail, not wait.
        for lost in slot.in_flight.drain(..pos) {
            let e = Error::new(ErrorKind::Io, "the task's result was lost on its way back");
            deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
        }
        let Some(f) = slot.in_flight.pop_front() else {
            return;
        };
        let now = Instant::now();
        let since = slot.last_done.map_or(f.sent, |t| t.max(f.sent));
        slot.last_done = Some(now);
        let ns = now.duration_since(since).as_nanos() as f64;
        self.chunk_ns = if self.chunk_ns == 0.0 {
            ns
        } else {
            self.chunk_ns * 0.875 + ns * 0.125
        };
        let delivery = match outcome {
            ChunkOutcome::Ran(p) => Delivery::Ran(p),
            ChunkOutcome::Failed(failure) => Delivery::Failed(match failure {
                ChunkFailure::Decode(m) => Error::new(ErrorKind::Decode, m),
                ChunkFailure::Panicked(m) => Error::panicked(m),
                ChunkFailure::Unsendable(m) => Error::new(ErrorKind::Encode, m),
                f @ ChunkFailure::BuildMismatch => Error::new(ErrorKind::Start, f.to_string()),
            }),
        };
        deliveries.push((f.chunk.sink, f.chunk.span, delivery));
    }
}
