//! Helper binary for the integration tests: small programs whose behaviour a test watches
//! from outside (stdout, a SIGKILL from the test, a replaced executable).
//!
//! `mproc-helper <mode>`; the start method comes from `MPROC_START_METHOD`.

use std::io::{BufRead, Write};
use std::time::Duration;

fn sleep_secs(s: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(s));
    s
}

fn print_then_return(text: String) -> usize {
    // No newline, no flush: mproc must not lose it when the child exits.
    print!("{text}");
    eprint!("{text}-on-stderr");
    text.len()
}

fn nap_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

fn square(x: u64) -> u64 {
    x * x
}

/// Reads standard input to its end: returns at once when it is /dev/null.
fn read_stdin(_: ()) -> usize {
    let mut s = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut s).unwrap_or(0)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "pool-no-init" {
        // Deliberately no mproc::init(): building a pool must fail with a clear error,
        // and return.
        match mproc::Pool::new(2) {
            Ok(_) => println!("unexpected: a pool without init"),
            Err(e) => println!("pool error: {e}"),
        }
        return;
    }
    if mode == "no-init" {
        // Deliberately no mproc::init(): spawning must fail with a clear error.
        match mproc::spawn(square, 3) {
            Ok(_) => println!("unexpected: spawned without init"),
            Err(e) => println!("error: {e}"),
        }
        return;
    }
    mproc::init();
    match mode.as_str() {
        "daemon-parent" => {
            // Start a daemonic child that would sleep for a minute, report its pid, and
            // wait to be SIGKILLed by the test.
            let child = mproc::Builder::new()
                .daemon(true)
                .spawn(sleep_secs, 60)
                .expect("spawn");
            println!("child {}", child.pid());
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "pool-parent" => {
            // Start a pool, report its two workers' pids, and wait to be SIGKILLed.
            let mut builder = mproc::pool::Builder::new().processes(2);
            if std::env::var("MPROC_START_METHOD").as_deref() == Ok("fork") {
                builder = builder.start_method(mproc::StartMethod::Fork);
            }
            let pool = builder.build().expect("pool");
            let naps: Vec<_> = (0..2)
                .map(|_| pool.apply_async(nap_pid, 300).expect("apply_async"))
                .collect();
            let pids: Vec<String> = naps
                .iter()
                .map(|r| r.get().expect("pid").to_string())
                .collect();
            println!("workers {}", pids.join(" "));
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        "print-before-return" => {
            let mut child =
                mproc::spawn(print_then_return, "printed-by-child".to_string()).expect("spawn");
            let n = child.join().expect("join");
            println!("\njoined {n}");
        }
        "flush-before-fork" => {
            // Text still in our stdout buffer when the child is forked must not come out
            // twice (once from the child's copy of the buffer).
            print!("buffered-before-fork ");
            let mut child = mproc::Builder::new()
                .start_method(mproc::StartMethod::Fork)
                .spawn(square, 5)
                .expect("spawn");
            let v = child.join().expect("join");
            println!("joined {v}");
        }
        "child-reads-stdin" => {
            // Our stdin is a pipe nobody writes to: a child that inherited it would block.
            let r = mproc::spawn(read_stdin, ()).and_then(|mut c| c.join());
            println!("child read {r:?}");
        }
        "spawn-on-line" => {
            // Wait for a line on stdin (the test replaces our executable meanwhile), then spawn.
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            let r = mproc::spawn(square, 12).and_then(|mut c| c.join());
            println!("result {r:?}");
        }
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
