//! Lists (arrays too): Python's list operations on a sequence of stored values.

use std::sync::MutexGuard;

use super::{Failure, Object, State, fault};
use crate::protocol::{Fault, Op, Out, Reply};

/// Python's index: negative counts from the end.
fn index(i: i64, len: usize) -> Result<usize, Failure> {
    let len_i = len as i64;
    let at = if i < 0 { i + len_i } else { i };
    if (0..len_i).contains(&at) {
        Ok(at as usize)
    } else {
        Err(fault(
            Fault::IndexOutOfRange,
            format!("index {i} is out of range for length {len}"),
        ))
    }
}

/// Python's slice bound: negative counts from the end, then clamped to the sequence.
fn bound(i: i64, len: usize) -> usize {
    let len_i = len as i64;
    let at = if i < 0 { i + len_i } else { i };
    at.clamp(0, len_i) as usize
}

impl Object {
    pub(super) fn seq(&self, mut g: MutexGuard<'_, State>, op: Op, growable: bool) -> Reply {
        let State::Seq { items, version } = &mut *g else {
            return Err(self.wrong(&op));
        };
        let reply = match op {
            Op::Len => Out::Num(items.len() as u64),
            Op::Get(i) => Out::Bytes(items[index(i, items.len())?].clone()),
            Op::Set(i, v) => {
                let at = index(i, items.len())?;
                items[at] = v;
                *version += 1;
                Out::Unit
            }
            Op::Index(v) => match items.iter().position(|x| *x == v) {
                Some(at) => Out::Num(at as u64),
                None => return Err(fault(Fault::ValueNotFound, "the value is not in the list")),
            },
            Op::Count(v) => Out::Num(items.iter().filter(|x| **x == v).count() as u64),
            Op::Contains(v) => Out::Bool(items.contains(&v)),
            Op::ToVec => Out::Many(items.clone()),
            Op::Slice(a, b) => {
                let (a, b) = (bound(a, items.len()), bound(b, items.len()));
                Out::Many(items.get(a..b.max(a)).unwrap_or_default().to_vec())
            }
            Op::Snapshot => Out::Snapshot(*version, items.clone()),
            Op::ReplaceIf(expected, new) => {
                if *version != expected || (!growable && new.len() != items.len()) {
                    Out::Bool(false)
                } else {
                    *items = new;
                    *version += 1;
                    Out::Bool(true)
                }
            }
            op if !growable => return Err(self.wrong(&op)),
            Op::Push(v) => {
                items.push(v);
                *version += 1;
                Out::Unit
            }
            Op::Extend(vs) => {
                items.extend(vs);
                *version += 1;
                Out::Unit
            }
            Op::Pop(None) => {
                let last = items.pop();
                *version += 1;
                Out::Maybe(last)
            }
            Op::Pop(Some(i)) => {
                let at = index(i, items.len())?;
                *version += 1;
                Out::Bytes(items.remove(at))
            }
            Op::Insert(i, v) => {
                items.insert(bound(i, items.len()), v);
                *version += 1;
                Out::Unit
            }
            Op::Remove(v) => match items.iter().position(|x| *x == v) {
                Some(at) => {
                    items.remove(at);
                    *version += 1;
                    Out::Unit
                }
                None => return Err(fault(Fault::ValueNotFound, "the value is not in the list")),
            },
            Op::Clear => {
                items.clear();
                *version += 1;
                Out::Unit
            }
            Op::Reverse => {
                items.reverse();
                *version += 1;
                Out::Unit
            }
            op => return Err(self.wrong(&op)),
        };
        Ok(reply)
    }
}
