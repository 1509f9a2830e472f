//! Custom shared objects: a user's type served by the manager, called through a typed proxy
//! (Python's `BaseManager.register`) with requests that are data, not code.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handle::Handle;
use crate::protocol::{Kind, Op};
use crate::proxy::common::proxy_common;
use crate::values::{OutExt, dec, enc};

/// A type the manager can serve: it is built in the server from an `Init`, and answers each
/// `Request` with a `Response`, one request at a time (each call is atomic).
///
/// The server runs only the `new` and `handle` of the types it was started with (see
/// [`Builder::register`](crate::Builder::register)); a client names the type and sends
/// data, never code.
///
/// ```
/// use mproc_manager::{Manager, SharedObject};
/// use serde::{Deserialize, Serialize};
///
/// /// A counter that hands out tickets.
/// struct Tickets(u64);
///
/// #[derive(Serialize, Deserialize)]
/// enum Call { Next, Peek }
///
/// impl SharedObject for Tickets {
///     const NAME: &'static str = "tickets";
///     type Init = u64;
///     type Request = Call;
///     type Response = u64;
///     fn new(first: u64) -> Self { Tickets(first) }
///     fn handle(&mut self, call: Call) -> u64 {
///         match call {
///             Call::Next => { self.0 += 1; self.0 - 1 }
///             Call::Peek => self.0,
///         }
///     }
/// }
///
/// # mproc_process::init();
/// let manager = Manager::builder().register::<(Tickets,)>().start()?;
/// let tickets = manager.shared::<Tickets>(100)?;
/// assert_eq!(tickets.call(Call::Next)?, 100);
/// assert_eq!(tickets.call(Call::Peek)?, 101);
/// # Ok::<(), mproc_manager::Error>(())
/// ```
pub trait SharedObject: Send + 'static {
    /// The name clients use for the type; unique among the registered types.
    const NAME: &'static str;
    /// What a new object is built from.
    type Init: Serialize + DeserializeOwned;
    /// A call.
    type Request: Serialize + DeserializeOwned;
    /// The answer to a call.
    type Response: Serialize + DeserializeOwned;
    /// Builds a new object in the server.
    fn new(init: Self::Init) -> Self;
    /// Answers one call, with the object to itself. A panic here is reported to the caller
    /// as [`ErrorKind::Handler`](crate::ErrorKind::Handler); the server goes on.
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

/// The set of custom types a server is started with: `()` for none, or a tuple of up to
/// eight [`SharedObject`] types, `(A,)`, `(A, B)`, and so on.
pub trait Registry: sealed::Sealed + 'static {}

/// A registered object with its type erased, as the server holds it.
pub trait Erased: Send {
    /// Decodes a request, answers it, and encodes the answer (`Err`: undecodable request).
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String>;
}

struct Holder<T>(T);

impl<T: SharedObject> Erased for Holder<T> {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, String> {
        // Decoded in the server, from a peer: a request nested deeper than the connection
        // thread's stack is refused rather than allowed to overflow it.
        let request: T::Request = mproc_wire::decode_from(request, Vec::new())
            .map_err(|e| format!("a request that is not a {}'s: {e}", T::NAME))?;
        let response = self.0.handle(request);
        postcard::to_allocvec(&response).map_err(|e| format!("encoding the response: {e}"))
    }
}

fn create<T: SharedObject>(init: &[u8]) -> Result<Box<dyn Erased>, String> {
    let init: T::Init = mproc_wire::decode_from(init, Vec::new())
        .map_err(|e| format!("an initial value that is not a {}'s: {e}", T::NAME))?;
    Ok(Box::new(Holder(T::new(init))))
}

pub(crate) mod sealed {
    /// How the server builds a registered type by name.
    pub trait Sealed {
        fn create(name: &str, init: &[u8]) -> Option<Result<Box<dyn super::Erased>, String>>;
    }
}

impl sealed::Sealed for () {
    fn create(_: &str, _: &[u8]) -> Option<Result<Box<dyn Erased>, String>> {
        None
    }
}
impl Registry for () {}

macro_rules! registry_tuple {
    ($($t:ident),+) => {
        impl<$($t: SharedObject),+> sealed::Sealed for ($($t,)+) {
            fn create(name: &str, init: &[u8]) -> Option<Result<Box<dyn Erased>, String>> {
                $(if name == $t::NAME {
                    return Some(create::<$t>(init));
                })+
                None
            }
        }
        impl<$($t: SharedObject),+> Registry for ($($t,)+) {}
    };
}
registry_tuple!(A);
registry_tuple!(A, B);
registry_tuple!(A, B, C);
registry_tuple!(A, B, C, D);
registry_tuple!(A, B, C, D, E);
registry_tuple!(A, B, C, D, E, F);
registry_tuple!(A, B, C, D, E, F, G);
registry_tuple!(A, B, C, D, E, F, G, H);

/// A proxy to a custom shared object: see [`SharedObject`] and
/// [`Manager::shared`](crate::Manager::shared).
pub struct Shared<T> {
    handle: Handle,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(Shared<T: SharedObject>, Kind::Custom(T::NAME.to_string()));

impl<T: SharedObject> Shared<T> {
    /// Sends `request` to the object and returns its response.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Handler`](crate::ErrorKind::Handler) when the handler panicked,
    /// [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) when the server is gone.
    pub fn call(&self, request: impl Borrow<T::Request>) -> Result<T::Response> {
        let request = request.borrow();
        let reply = self.handle.op(Op::Custom(enc(request)?)).bytes()?;
        dec(&reply)
    }

    /// Like [`call`](Self::call), waiting at most `timeout` for the answer.
    pub fn call_timeout(
        &self,
        request: impl Borrow<T::Request>,
        timeout: Duration,
    ) -> Result<T::Response> {
        let request = request.borrow();
        let mut handle = self.handle.clone();
        handle.set_timeout(Some(timeout));
        let reply = handle.op(Op::Custom(enc(request)?)).bytes()?;
        dec(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A registered type whose requests are recursive.
    struct Depth;

    #[derive(Serialize, Deserialize)]
    enum Call {
        Here,
        Deeper(Box<Call>),
    }

    impl SharedObject for Depth {
        const NAME: &'static str = "depth";
        type Init = ();
        type Request = Call;
        type Response = u64;
        fn new((): ()) -> Self {
            Depth
        }
        fn handle(&mut self, mut call: Call) -> u64 {
            let mut depth = 0;
            while let Call::Deeper(inner) = call {
                call = *inner;
                depth += 1;
            }
            depth
        }
    }

    #[test]
    fn a_request_nested_deeper_than_the_connection_threads_stack_is_refused() {
        // Found with the manager_request fuzz target (its input is in
        // fuzz/regressions/manager_request/): a client's request to a registered type,
        // nested deep enough, overflowed the stack of the server's connection thread
        // (1 MiB), and the server process died with it.
        let outcome = std::thread::Builder::new()
            .stack_size(crate::server::THREAD_STACK)
            .spawn(|| {
                let mut object = create::<Depth>(&[]).unwrap();
                let mut deep = vec![1u8; 1 << 20];
                deep.push(0);
                let refused = object.call(&deep).unwrap_err();
                let answer = object.call(&[1, 1, 1, 0]).unwrap();
                (refused, answer)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(outcome.0.contains("nests too deeply"), "{}", outcome.0);
        assert_eq!(postcard::from_bytes::<u64>(&outcome.1).unwrap(), 3);
    }
}
