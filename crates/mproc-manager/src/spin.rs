//! Spinning before sleeping: how both ends of a manager connection wait for the other.
//!
//! A call is a round trip, and on many machines waking a sleeping process on another CPU
//! costs more than the whole exchange (tens of microseconds on a virtual machine whose idle
//! CPUs halt). So the caller waiting for its reply, and the server's connection thread
//! waiting for the next request, first look at the socket for a while without sleeping.
//! The while adapts, as the queue's does: it doubles when a look finds the message, halves
//! when it had to sleep, so a caller that calls now and then costs the server almost no
//! spinning, and one that calls in a loop gets answers at the speed of the exchange itself.

use mproc_pipe::Connection;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The shortest and longest spin, in microseconds, and where it starts.
const MIN_US: u32 = 2;
const MAX_US: u32 = 200;
const START_US: u32 = 50;

/// An adaptive spin budget for one kind of wait.
#[derive(Debug)]
pub(crate) struct Spin {
    budget_us: AtomicU32,
}

impl Default for Spin {
    fn default() -> Self {
        Self {
            budget_us: AtomicU32::new(START_US),
        }
    }
}

impl Spin {
    /// Tries to receive on `conn` until a message comes or the budget (or `deadline`) runs
    /// out: `Ok(None)` then, and the caller's blocking receive sleeps. Each look is one
    /// non-blocking read, which takes the message when it is there.
    pub(crate) fn recv<S, R: DeserializeOwned>(
        &self,
        conn: &mut Connection<S, R>,
        deadline: Option<Instant>,
    ) -> mproc_pipe::Result<Option<R>> {
        let budget = self.budget_us.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut until = start + Duration::from_micros(u64::from(budget));
        if let Some(d) = deadline {
            until = until.min(d);
        }
        loop {
            if let Some(message) = conn.try_recv()? {
                // Found while spinning: spin longer next time if it took more than half
                // the budget.
                if start.elapsed() > Duration::from_micros(u64::from(budget / 2)) {
                    self.set((budget * 2).min(MAX_US));
                }
                return Ok(Some(message));
            }
            if Instant::now() >= until {
                self.set((budget / 2).max(MIN_US));
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    fn set(&self, us: u32) {
        self.budget_us.store(us, Ordering::Relaxed);
    }
}
