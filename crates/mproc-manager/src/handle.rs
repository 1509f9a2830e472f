//! `Handle`: what every proxy holds, a reference to one object in one manager that can travel
//! to another process.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::client::{self, Endpoint, deadline_after};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{Op, Out, Request, Wait};

/// How much longer than a blocking operation's own timeout a caller waits for the server's
/// answer before it gives up on the server.
const GRACE: Duration = Duration::from_secs(5);

/// A reference to one object in one manager.
#[derive(Clone)]
pub struct Handle {
    endpoint: Arc<Endpoint>,
    id: u64,
    /// The longest a call may wait for the server (beyond a blocking operation's own wait).
    timeout: Option<Duration>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.endpoint.address(), self.id)
    }
}

impl Handle {
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: u64) -> Self {
        Self {
            endpoint,
            id,
            timeout: None,
        }
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Runs an operation that does not wait in the server.
    pub(crate) fn op(&self, op: Op) -> Result<Out> {
        self.call(op, self.timeout.and_then(deadline_after), true)
    }

    /// Runs the operation `make` builds for a wait in the server, as `wait` says.
    ///
    /// The proxy's deadline bounds a wait that has none of its own: the server is told to give
    /// up by then, so that it takes nothing (no item, no lock) for a caller that stopped
    /// waiting. The caller waits for the answer that long plus the proxy's deadline (or 5 s
    /// without one); `unbounded_after` (a condition, which must take its lock back however
    /// long that takes) waits for it without a bound unless the proxy has a deadline.
    pub(crate) fn op_waiting(
        &self,
        wait: Wait,
        unbounded_after: bool,
        make: impl FnOnce(Wait) -> Op,
    ) -> Result<Out> {
        let wait = match (wait, self.timeout) {
            (Wait::Forever, Some(t)) => Wait::For(t),
            (w, _) => w,
        };
        let waited = match wait {
            Wait::No => Duration::ZERO,
            Wait::For(d) => d,
            Wait::Forever => return self.call(make(wait), None, false),
        };
        let after = match (self.timeout, unbounded_after) {
            (Some(t), _) => Some(t),
            (None, false) => Some(GRACE),
            (None, true) => None,
        };
        let deadline = after.and_then(|a| deadline_after(waited.saturating_add(a)));
        self.call(make(wait), deadline, matches!(wait, Wait::No))
    }

    /// The error of a wait without a timeout of its own that the proxy's deadline ended.
    pub(crate) fn timed_out(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "the proxy's deadline of {:?} passed while waiting",
                self.timeout.unwrap_or_default()
            ),
        )
    }

    fn call(&self, op: Op, deadline: Option<Instant>, quick: bool) -> Result<Out> {
        let request = Request::Op { id: self.id, op };
        self.endpoint.call_with(&request, deadline, quick)
    }
}

/// How a proxy travels: where its manager is, the key, and the object.
#[derive(Serialize, Deserialize)]
struct WireHandle {
    address: String,
    authkey: ByteBuf,
    id: u64,
    timeout: Option<Duration>,
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireHandle {
            address: self.endpoint.address().to_string(),
            authkey: ByteBuf::from(self.endpoint.authkey().to_vec()),
            id: self.id,
            timeout: self.timeout,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireHandle::deserialize(d)?;
        let address = w
            .address
            .parse()
            .map_err(|_| serde::de::Error::custom("a manager proxy with an unreadable address"))?;
        Ok(Handle {
            endpoint: client::endpoint(&address, &w.authkey),
            id: w.id,
            timeout: w.timeout,
        })
    }
}
