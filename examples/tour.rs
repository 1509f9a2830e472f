//! The tour: every capability of mproc, level by level: the eight levels of the project's
//! design.
//!
//! `cargo run --release --example tour`

#[path = "level1_process.rs"]
#[allow(dead_code)]
mod level1;
#[path = "level2_parallel.rs"]
#[allow(dead_code)]
mod level2;
#[path = "level3_pool.rs"]
#[allow(dead_code)]
mod level3;
#[path = "level4_pipe.rs"]
#[allow(dead_code)]
mod level4;
#[path = "level5_queue.rs"]
#[allow(dead_code)]
mod level5;
#[path = "level6_manager.rs"]
#[allow(dead_code)]
mod level6;
#[path = "level7_shared_memory.rs"]
#[allow(dead_code)]
mod level7;
#[path = "level8_lock.rs"]
#[allow(dead_code)]
mod level8;

fn main() -> mproc::Result<()> {
    mproc::init();
    println!(
        "mproc tour: Python's multiprocessing, in Rust ({} CPUs here)",
        mproc::cpu_count()
    );
    level1::run()?;
    level2::run()?;
    level3::run()?;
    level4::run()?;
    level5::run()?;
    level6::run()?;
    level7::run()?;
    level8::run()?;
    println!("\ntour complete");
    Ok(())
}
