//! Registered types: a user's object, called through its type-erased handler.

use std::sync::MutexGuard;

use super::{Object, State, fault};
use crate::protocol::{Bytes, Fault, Op, Out, Reply};

impl Object {
    pub(super) fn custom(&self, mut g: MutexGuard<'_, State>, op: Op) -> Reply {
        let State::Custom(object) = &mut *g else {
            return Err(self.wrong(&op));
        };
        match op {
            Op::Custom(request) => {
                let outcome = mproc_process::catch_panic(std::panic::AssertUnwindSafe(|| {
                    object.call(&request)
                }));
                match outcome {
                    Ok(Ok(reply)) => Ok(Out::Bytes(Bytes::from(reply))),
                    Ok(Err(message)) => Err(fault(Fault::InvalidInput, message)),
                    Err(panic) => Err(fault(
                        Fault::Handler,
                        format!("the shared object's handler panicked: {panic}"),
                    )),
                }
            }
            op => Err(self.wrong(&op)),
        }
    }
}
