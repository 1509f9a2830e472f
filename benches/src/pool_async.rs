//! The async pool figure: `apply_async` results awaited all at once from one task on
//! tokio's single-thread runtime (`async_pool_apply_per_s`), beside the same tasks taken by
//! a blocking `get` in order (`extra.pool_apply_get_per_s`).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use mproc::Pool;

fn ident(x: u64) -> u64 {
    x
}

/// `apply_async(ident, x)` for `x` in `0..n`, then `get()` of each in order: tasks per
/// second, and whether every result came back right.
pub fn apply_get_rate(pool: &Pool, n: u64) -> (f64, bool) {
    let t0 = Instant::now();
    let results: Vec<_> = (0..n)
        .map(|x| pool.apply_async(ident, x).expect("apply_async"))
        .collect();
    let values: Vec<u64> = results.iter().map(|r| r.get().expect("get")).collect();
    let s = t0.elapsed().as_secs_f64();
    (n as f64 / s, in_order(&values, n))
}

/// `apply_async(ident, x)` for `x` in `0..n` inside one task on `runtime`, then all `n`
/// futures joined by that task (each polled again only when its own waker fires): tasks
/// per second, and whether every result came back right. The runtime is built once,
/// outside the timing.
pub fn async_apply_rate(runtime: &tokio::runtime::Runtime, pool: &Pool, n: u64) -> (f64, bool) {
    runtime.block_on(async {
        let t0 = Instant::now();
        let results: Vec<_> = (0..n)
            .map(|x| pool.apply_async(ident, x).expect("apply_async"))
            .collect();
        let values: Vec<u64> = join_all(results)
            .await
            .into_iter()
            .map(|r| r.expect("await"))
            .collect();
        let s = t0.elapsed().as_secs_f64();
        (n as f64 / s, in_order(&values, n))
    })
}

fn in_order(values: &[u64], n: u64) -> bool {
    values.len() as u64 == n && values.iter().enumerate().all(|(i, &v)| v == i as u64)
}

/// The futures woken since the joining task last looked, and that task's waker.
#[derive(Default)]
struct Woken {
    indices: Mutex<Vec<usize>>,
    joiner: Mutex<Option<Waker>>,
}

/// The waker of future `index`: records it as woken and wakes the joining task.
struct Slot {
    index: usize,
    woken: Arc<Woken>,
}

impl Wake for Slot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken
            .indices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.index);
        if let Some(w) = &*self.woken.joiner.lock().unwrap_or_else(|p| p.into_inner()) {
            w.wake_by_ref();
        }
    }
}

/// Awaits every future at once and returns their outputs in order: futures-util's
/// `join_all` in a few lines (mproc does not pull futures-util in). Each future gets a
/// waker of its own, so a wake-up polls only the futures that were woken, not all `n`.
async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let woken = Arc::new(Woken::default());
    let wakers: Vec<Waker> = (0..futures.len())
        .map(|index| {
            Waker::from(Arc::new(Slot {
                index,
                woken: woken.clone(),
            }))
        })
        .collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut to_poll: Vec<usize> = (0..futures.len()).collect();
    let mut left = futures.len();
    poll_fn(|cx| {
        *woken.joiner.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        to_poll.append(&mut woken.indices.lock().unwrap_or_else(|p| p.into_inner()));
        for i in to_poll.drain(..) {
            if outputs[i].is_some() {
                continue;
            }
            let mut own = Context::from_waker(&wakers[i]);
            if let Poll::Ready(v) = Pin::new(&mut futures[i]).poll(&mut own) {
                outputs[i] = Some(v);
                left -= 1;
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
