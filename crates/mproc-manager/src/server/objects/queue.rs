//! Queues, joinable or not: items in order, with waits for room, for an item, for all done.

use std::sync::MutexGuard;

use super::{Ended, Object, State, fault, gone};
use crate::protocol::{Fault, Kind, Op, Out, Reply};
use crate::server::Caller;

impl Object {
    pub(super) fn queue(&self, g: MutexGuard<'_, State>, op: Op, caller: &Caller<'_>) -> Reply {
        let joinable = self.kind == Kind::JoinableQueue;
        match op {
            Op::Len | Op::Full => {
                let mut g = g;
                let State::Queue { items, max, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                Ok(match op {
                    Op::Len => Out::Num(items.len() as u64),
                    _ => Out::Bool(*max != 0 && items.len() as u64 >= *max),
                })
            }
            Op::Put(item, wait) => {
                let has_room = |s: &mut State| matches!(s, State::Queue { items, max, .. } if *max == 0 || (items.len() as u64) < *max);
                let (mut g, ended) = self.wait_until(g, wait, caller, has_room);
                match ended {
                    Ended::Ready => {}
                    Ended::TimedOut => return Err(fault(Fault::Full, "the queue is full")),
                    Ended::Gone => return Err(gone()),
                }
                if let State::Queue {
                    items, unfinished, ..
                } = &mut *g
                {
                    items.push_back(item);
                    *unfinished += 1;
                }
                self.changed.notify_all();
                Ok(Out::Unit)
            }
            Op::Take(wait) => {
                let has_item =
                    |s: &mut State| matches!(s, State::Queue { items, .. } if !items.is_empty());
                let (mut g, ended) = self.wait_until(g, wait, caller, has_item);
                match ended {
                    Ended::Ready => {}
                    Ended::TimedOut => return Err(fault(Fault::Empty, "the queue is empty")),
                    Ended::Gone => return Err(gone()),
                }
                let State::Queue { items, .. } = &mut *g else {
                    return Err(self.wrong(&Op::Len));
                };
                let item = items.pop_front().unwrap_or_default();
                self.changed.notify_all();
                Ok(Out::Bytes(item))
            }
            Op::TaskDone if joinable => {
                let mut g = g;
                let State::Queue { unfinished, .. } = &mut *g else {
                    return Err(self.wrong(&op));
                };
                if *unfinished == 0 {
                    return Err(fault(
                        Fault::NotOwner,
                        "task_done called more times than items were put",
                    ));
                }
                *unfinished -= 1;
                if *unfinished == 0 {
                    self.changed.notify_all();
                }
                Ok(Out::Unit)
            }
            Op::Join(wait) if joinable => {
                let all_done = |s: &mut State| matches!(s, State::Queue { unfinished: 0, .. });
                match self.wait_until(g, wait, caller, all_done).1 {
                    Ended::Ready => Ok(Out::Unit),
                    Ended::TimedOut => Err(fault(Fault::Timeout, "items are still unfinished")),
                    Ended::Gone => Err(gone()),
                }
            }
            op => Err(self.wrong(&op)),
        }
    }
}
