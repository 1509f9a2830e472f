//! Level 1: create a process, print the pids, start and join it.
//!
//! `cargo run --release --example level1_process`

use mproc::{Builder, ExitStatus};

/// Runs in the child: says who it is and who its parent is, and returns its pid.
fn hello(greeting: String) -> u32 {
    let me = mproc::current_process();
    let parent = mproc::parent_process().map(|p| p.pid()).unwrap_or(0);
    println!(
        "  child : {greeting} from {} (pid {}, parent pid {parent})",
        me.name(),
        me.pid()
    );
    me.pid()
}

/// Runs level 1 and checks what it shows.
pub fn run() -> mproc::Result<()> {
    mproc_examples::heading(1, "a child process: start, pids, join");
    println!(
        "  parent: pid {}, start method {}",
        std::process::id(),
        mproc::get_start_method()
    );
    let mut child = Builder::new()
        .name("greeter")
        .spawn(hello, "hello".to_string())?;
    println!(
        "  parent: started {} with pid {}",
        child.name(),
        child.pid()
    );
    let reported = child.join()?;
    assert_eq!(reported, child.pid(), "the child reports its own pid");
    assert_eq!(child.exit_status(), Some(ExitStatus::Code(0)));
    println!(
        "  parent: joined; the child returned its pid {reported}, exit status {}",
        ExitStatus::Code(0)
    );
    Ok(())
}

#[allow(dead_code)]
fn main() -> mproc::Result<()> {
    mproc::init();
    run()
}
