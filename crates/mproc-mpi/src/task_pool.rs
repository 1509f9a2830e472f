//! [`MpiPool`]'s [`TaskPool`](mproc_pool::TaskPool): the calls both pools answer, so code
//! written against the trait runs on the worker ranks unchanged. Each trait method calls
//! `MpiPool`'s own method of that name (the macro is mproc-pool's, shared with `Pool`).

use crate::pool::MpiPool;

mproc_pool::impl_task_pool_by_inherent_methods!(MpiPool);
