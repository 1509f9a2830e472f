//! Sending chunks to the workers: to the least busy, as deep as their measured speed
//! warrants, taking queued chunks back for a worker that is idle.

use std::time::{Duration, Instant};

use mproc_queue::{GetError, PutError};

use super::{Deliveries, InFlight, Phase, Slot, State};
use crate::error::{Error, ErrorKind};
use crate::sink::Delivery;
use crate::task::{SharedPayload, Task};

/// At most this many chunks wait in one worker's queue (plus the one it runs).
const MAX_DEPTH: usize = 256;
/// How much queued work keeps a worker busy without starving the others: the depth is
/// chosen so that a worker's queue holds about this much, by the chunks' measured time.
const QUEUED_WORK: Duration = Duration::from_micros(200);

/// A chunk running longer than this (or twice the usual, if more) holds no chunks queued
/// behind it.
const LONG_CHUNK: Duration = Duration::from_millis(1);

impl State {
    /// How many chunks a worker's queue may hold: enough queued work to keep it busy
    /// between two visits of the manager, little enough that a long chunk does not keep
    /// others waiting behind it while another worker is idle.
    fn depth(&self) -> usize {
        if self.chunk_ns == 0.0 {
            return 1; // nothing measured yet: queue behind nothing
        }
        let per = QUEUED_WORK.as_nanos() as f64 / self.chunk_ns;
        (1.0 + per).clamp(2.0, MAX_DEPTH as f64) as usize
    }

    /// Moves work along: fails everything when the pool is broken, otherwise sends what
    /// is pending and, once nothing is, lets idle workers take back queued chunks.
    pub(super) fn dispatch(&mut self, deliveries: &mut Deliveries) {
        if let Some(e) = &self.broken {
            for c in self.pending.drain(..) {
                deliveries.push((c.sink, c.span, Delivery::Failed(e.clone())));
            }
            for slot in &mut self.slots {
                for f in slot.in_flight.drain(..) {
                    deliveries.push((f.chunk.sink, f.chunk.span, Delivery::Failed(e.clone())));
                }
            }
            return;
        }
        if self.phase == Phase::Terminating {
            return;
        }
        self.send_pending(deliveries);
        if self.pending.is_empty() && self.steal(deliveries) {
            self.send_pending(deliveries);
        }
    }

    /// Takes back, for each idle worker, one chunk still waiting in the queue of the
    /// worker with the most queued, into the pending list: at the end of a call, an idle
    /// worker never watches chunks wait behind another's long one. Returns whether it took
    /// any. A chunk the owner took first is simply not there to take.
    fn steal(&mut self, deliveries: &mut Deliveries) -> bool {
        let idle = self
            .slots
            .iter()
            .filter(|s| s.child.is_some() && s.in_flight.is_empty() && s.quota != Some(0))
            .count();
        let mut took = false;
        for _ in 0..idle {
            let victim = self
                .slots
                .iter_mut()
                .filter(|s| s.in_flight.len() >= 2)
                .max_by_key(|s| s.in_flight.len());
            let Some(victim) = victim else { break };
            let task = match victim.tasks.as_ref().map(|q| q.try_get()) {
                Some(Ok(task)) => task,
                Some(Err(GetError::Failed(_))) => {
                    // The oldest queued record was unreadable and is gone: the first chunk
                    // the victim has not started is the one lost.
                    let started = victim
                        .progress
                        .as_ref()
                        .map_or(0, |p| p.started.load(std::sync::atomic::Ordering::Acquire));
                    if let Some(pos) = victim.in_flight.iter().position(|f| f.seq > started)
                        && let Some(lost) = victim.in_flight.remove(pos)
                    {
                        let e = Error::new(ErrorKind::Io, "the task was lost in its queue");
                        deliveries.push((lost.chunk.sink, lost.chunk.span, Delivery::Failed(e)));
                    }
                    break;
                }
                _ => break,
            };
            let pos = victim.in_flight.iter().position(|f| f.seq == task.seq);
            if let Some(f) = pos.and_then(|pos| victim.in_flight.remove(pos)) {
                victim.quota = victim.quota.map(|q| q + 1);
                self.pending.push_back(f.chunk);
                took = true;
            }
        }
        took
    }

    /// Sends pending chunks to the workers with the least work, as far as their queues
    /// have room.
    fn send_pending(&mut self, deliveries: &mut Deliveries) {
        let depth = self.depth();
        let mut full = vec![false; self.slots.len()];
        let now = Instant::now();
        // A worker whose oldest chunk has run much longer than chunks usually take gets no
        // more queued behind it: the pending chunks wait for whichever worker frees first.
        let long = Duration::from_nanos((2.0 * self.chunk_ns) as u64).max(LONG_CHUNK);
        let busy_long = |s: &Slot| {
            s.in_flight.front().is_some_and(|f| {
                let running_since = s.last_done.map_or(f.sent, |t| t.max(f.sent));
                now - running_since > long
            })
        };
        while !self.pending.is_empty() {
            let pick = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    !full[*i]
                        && s.child.is_some()
                        && s.quota != Some(0)
                        && s.in_flight.len() < depth
                        && !busy_long(s)
                })
                .min_by_key(|(_, s)| s.in_flight.len())
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            if !chunk.sink.begin() {
                continue;
            }
            let seq = self.next_seq;
            let slot = &mut self.slots[i];
            let Some(q) = &slot.tasks else {
                full[i] = true;
                chunk.sink.unbegin();
                self.pending.push_front(chunk);
                continue;
            };
            let task = Task {
                seq,
                call: chunk.call,
                args: SharedPayload(chunk.args.clone()),
            };
            match q.try_put(task) {
                Ok(()) => {
                    self.next_seq += 1;
                    slot.quota = slot.quota.map(|q| q - 1);
                    slot.in_flight.push_back(InFlight {
                        seq,
                        chunk,
                        sent: now,
                    });
                }
                // A try_put never waits, so never finds the worker gone: its pidfd says so.
                Err(PutError::Full(_) | PutError::Closed(_) | PutError::Disconnected(_)) => {
                    full[i] = true;
                    chunk.sink.unbegin();
                    self.pending.push_front(chunk);
                }
                Err(PutError::Failed(_, e)) => {
                    let e = Error::new(ErrorKind::Encode, "the task could not be sent to a worker")
                        .with_source(e);
                    deliveries.push((chunk.sink, chunk.span, Delivery::Failed(e)));
                }
            }
        }
    }
}
