//! Dicts, sets among them: stored keys kept in the order they were inserted, as Python's.

use std::collections::{BTreeMap, HashMap};
use std::sync::MutexGuard;

use super::{Object, State};
use crate::protocol::{Bytes, Op, Out, Reply};

/// A dict that keeps its keys in insertion order, as Python's does.
#[derive(Default)]
pub(crate) struct Dict {
    entries: HashMap<Bytes, Entry>,
    order: BTreeMap<u64, Bytes>,
    /// Numbers both positions and versions: every write takes the next.
    clock: u64,
}

struct Entry {
    value: Bytes,
    /// When the value was last written.
    version: u64,
    /// Where the key sits in the order.
    position: u64,
}

impl Dict {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let version = self.tick();
        if let Some(e) = self.entries.get_mut(&key) {
            e.version = version;
            return Some(std::mem::replace(&mut e.value, value));
        }
        self.order.insert(version, key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                version,
                position: version,
            },
        );
        None
    }

    fn remove(&mut self, key: &Bytes) -> Option<Bytes> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.position);
        self.tick();
        Some(e.value)
    }

    pub(super) fn extend(&mut self, pairs: Vec<(Bytes, Bytes)>) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }

    fn in_order(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.order.values().map(|k| (k, &self.entries[k]))
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.tick();
    }
}

impl Object {
    pub(super) fn dict(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Dict(d) = &mut *g else {
            return Err(self.wrong(&op));
        };
        Ok(match op {
            Op::Len => Out::Num(d.entries.len() as u64),
            Op::DictGet(k) => Out::Maybe(d.entries.get(&k).map(|e| e.value.clone())),
            Op::DictInsert(k, v) => Out::Maybe(d.insert(k, v)),
            Op::DictRemove(k) => Out::Maybe(d.remove(&k)),
            Op::DictContains(k) => Out::Bool(d.entries.contains_key(&k)),
            Op::Keys => Out::Many(d.in_order().map(|(k, _)| k.clone()).collect()),
            Op::Values => Out::Many(d.in_order().map(|(_, e)| e.value.clone()).collect()),
            Op::Items => Out::Pairs(
                d.in_order()
                    .map(|(k, e)| (k.clone(), e.value.clone()))
                    .collect(),
            ),
            Op::Clear => {
                d.clear();
                Out::Unit
            }
            Op::DictExtend(pairs) => {
                d.extend(pairs);
                Out::Unit
            }
            Op::SetDefault(k, v) => match d.entries.get(&k) {
                Some(e) => Out::Bytes(e.value.clone()),
                None => {
                    d.insert(k, v.clone());
                    Out::Bytes(v)
                }
            },
            Op::PopItem => match d.order.last_key_value().map(|(_, k)| k.clone()) {
                Some(k) => {
                    let v = d.remove(&k).unwrap_or_default();
                    Out::Pairs(vec![(k, v)])
                }
                None => Out::Pairs(Vec::new()),
            },
            Op::DictGetVersioned(k) => match d.entries.get(&k) {
                Some(e) => Out::Versioned(Some(e.version), Some(e.value.clone())),
                None => Out::Versioned(None, None),
            },
            Op::DictSetIf(k, expected, new) => {
                if d.entries.get(&k).map(|e| e.version) != expected {
                    Out::Bool(false)
                } else {
                    match new {
                        Some(v) => {
                            d.insert(k, v);
                        }
                        None => {
                            d.remove(&k);
                        }
                    }
                    Out::Bool(true)
                }
            }
            op => return Err(self.wrong(&op)),
        })
    }
}
