//! Single stored values: a `Value` (one value) or a `Namespace` (named fields).

use std::sync::MutexGuard;

use super::{Object, State, fault};
use crate::protocol::{Fault, Op, Out, Reply};

impl Object {
    pub(super) fn value(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Value { bytes, version } = &mut *g else {
            return Err(self.wrong(&op));
        };
        Ok(match op {
            Op::Load => Out::Bytes(bytes.clone()),
            Op::Store(b) => {
                *bytes = b;
                *version += 1;
                Out::Unit
            }
            Op::LoadVersioned => Out::Versioned(Some(*version), Some(bytes.clone())),
            Op::StoreIf(expected, b) => {
                if *version == expected {
                    *bytes = b;
                    *version += 1;
                    Out::Bool(true)
                } else {
                    Out::Bool(false)
                }
            }
            op => return Err(self.wrong(&op)),
        })
    }

    pub(super) fn namespace(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Namespace(fields) = &mut *g else {
            return Err(self.wrong(&op));
        };
        let missing = |name: &str| {
            fault(
                Fault::KeyNotFound,
                format!("the namespace has no field {name:?}"),
            )
        };
        Ok(match op {
            Op::Field(name) => {
                Out::Bytes(fields.get(&name).cloned().ok_or_else(|| missing(&name))?)
            }
            Op::SetField(name, b) => {
                fields.insert(name, b);
                Out::Unit
            }
            Op::DelField(name) => {
                fields.remove(&name).ok_or_else(|| missing(&name))?;
                Out::Unit
            }
            Op::Fields => Out::Names(fields.keys().cloned().collect()),
            op => return Err(self.wrong(&op)),
        })
    }
}
