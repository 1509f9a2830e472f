//! A manager served on TCP and reached by another program: this program serves a queue of
//! jobs and a dict of results on 127.0.0.1, then starts a second copy of itself (as a
//! program on another machine would be started) that connects with the key, takes the
//! jobs and writes the results. A client with a wrong key is refused.
//!
//! `cargo run --release --example manager_remote`

use std::process::Command;

use mproc::Manager;
use mproc::manager::{Dict, ErrorKind, Queue};

/// The key both sides are configured with; it never crosses the wire (each side proves it
/// knows it with HMAC).
const KEY: &[u8] = b"a secret both programs know";

fn serve() -> mproc::Result<()> {
    let server = Manager::serve("127.0.0.1:0", KEY)?;
    let address = server.address().to_string();
    println!("server: serving on {address}");
    let jobs = server.queue::<u64>()?;
    let results = server.dict::<u64, u64>()?;
    server.publish("jobs", &jobs)?;
    server.publish("results", &results)?;
    for n in 1..=10 {
        jobs.put(n)?;
    }

    let wrong = Manager::connect(&address, b"a guess").unwrap_err();
    println!(
        "server: a client with a wrong key is refused: {:?}",
        wrong.kind()
    );
    assert_eq!(wrong.kind(), ErrorKind::Authentication);

    let exe = std::env::current_exe()?;
    let status = Command::new(exe).args(["client", &address]).status()?;
    assert!(status.success(), "the client failed: {status}");
    let mut squares = results.items()?;
    squares.sort();
    println!("server: results from the client: {squares:?}");
    assert_eq!(squares.len(), 10);
    assert!(squares.iter().all(|&(n, sq)| sq == n * n));
    println!("server: 10 jobs done by another program over TCP");
    Ok(())
}

fn client(address: &str) -> mproc::Result<()> {
    let manager = Manager::connect(address, KEY)?;
    let jobs = manager.lookup::<Queue<u64>>("jobs")?;
    let results = manager.lookup::<Dict<u64, u64>>("results")?;
    let mut done = 0;
    while let Some(n) = jobs.try_get()? {
        results.insert(n, n * n)?;
        done += 1;
    }
    println!(
        "client {}: connected with the key, squared {done} jobs",
        std::process::id()
    );
    Ok(())
}

fn main() -> mproc::Result<()> {
    mproc::init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("client") => client(args.get(2).expect("client ADDRESS")),
        _ => serve(),
    }
}
