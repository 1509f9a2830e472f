//! `refuse_fork`: once called, every fork of the process fails with a typed error naming
//! the reason (a permit does not help), while spawn and forkserver go on. A test binary of
//! its own, since the refusal lasts for the life of the process.

use std::time::Duration;

use mproc::process::{ErrorKind, ForkServer, refuse_fork};
use mproc::{Builder, StartMethod};
use mproc_tests::deadline;

mproc::init_before_main!();

const LIMIT: Duration = Duration::from_secs(60);
const REASON: &str = "MPI is initialised in this process";

fn pid(_: ()) -> u32 {
    std::process::id()
}

#[test]
fn fork_is_refused_with_its_reason_and_the_other_methods_go_on() {
    deadline(LIMIT, || {
        refuse_fork(REASON);
        refuse_fork("a second reason is ignored");

        let err = Builder::new()
            .start_method(StartMethod::Fork)
            .spawn(pid, ())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ForkRefused);
        assert!(err.to_string().contains(REASON), "{err}");

        // A fork server of one's own is a fork of this process: refused too. (The test
        // harness has threads, so without the refusal these would fail for that; the
        // message says the refusal comes first.)
        let err = ForkServer::start(None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ForkRefused);
        assert!(err.to_string().contains(REASON), "{err}");

        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let mut child = Builder::new().start_method(method).spawn(pid, ()).unwrap();
            assert_ne!(child.join().unwrap(), std::process::id(), "{method:?}");
        }
    });
}
