//! One smoke test per cargo feature of the facade: every re-export is reachable and works.
//! Each is gated by its feature, so that `--no-default-features --features F` passes for
//! every `F` (`cargo xtask test` runs them one at a time).

#[cfg(feature = "process")]
mproc::init_before_main!();

#[cfg(feature = "process")]
fn fail(_: ()) -> u8 {
    panic!("smoke")
}

#[cfg(feature = "process")]
fn add((a, b): (u32, u32)) -> u32 {
    a + b
}

/// Tests that start children hold this, so that `active_children()` sees only their own.
#[cfg(feature = "process")]
static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(feature = "process")]
#[test]
fn feature_process_reexports_work() {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    // Top-level conveniences.
    let mut child = mproc::spawn(add, (2, 3)).unwrap();
    assert_eq!(child.join().unwrap(), 5);
    let mut named = mproc::Builder::new()
        .name("smoke")
        .start_method(mproc::StartMethod::Spawn)
        .spawn(add, (1, 1))
        .unwrap();
    assert_eq!(
        mproc::process::wait_sentinels(
            &[named.sentinel()],
            Some(std::time::Duration::from_secs(30))
        )
        .unwrap(),
        [0]
    );
    assert_eq!(named.join().unwrap(), 2);
    assert_eq!(named.exit_status(), Some(mproc::ExitStatus::Code(0)));
    assert_eq!(mproc::current_process().name(), "MainProcess");
    assert!(mproc::parent_process().is_none());
    assert!(mproc::active_children().is_empty());
    assert!(mproc::cpu_count() >= mproc::process_cpu_count());
    assert!(mproc::StartMethod::all().contains(&mproc::get_start_method()));
    // The module, and the facade's error conversion.
    let err: mproc::Error = mproc::process::Builder::new()
        .spawn(fail, ())
        .unwrap()
        .join()
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, mproc::Error::Process(e) if e.kind() == mproc::process::ErrorKind::Panicked)
    );
    let _: std::io::Error = err.into();
}

#[cfg(feature = "wire")]
#[test]
fn feature_wire_reexports_work() {
    let msg = mproc::wire::encode(&("smoke", 1u8)).unwrap();
    let back: (String, u8) = mproc::wire::decode(msg).unwrap();
    assert_eq!(back, ("smoke".to_string(), 1));
    let err: mproc::Error = mproc::wire::decode::<u8>(mproc::wire::Message::from_bytes(vec![]))
        .unwrap_err()
        .into();
    assert!(matches!(err, mproc::Error::Wire(_)));
}

#[cfg(feature = "unstable-sys")]
#[test]
fn sys_reexport_works() {
    let (a, _b) = mproc::sys::socketpair().unwrap();
    assert_eq!(
        mproc::sys::peer_pid(std::os::fd::AsFd::as_fd(&a)).unwrap(),
        std::process::id()
    );
}

#[cfg(feature = "shm")]
#[test]
fn feature_shm_reexports_work() {
    let shm = mproc::SharedMemory::create(64).unwrap();
    shm.write::<u64>(0, 5).unwrap();
    let copy: mproc::SharedMemory =
        mproc::wire::decode(mproc::wire::encode(&shm).unwrap()).unwrap();
    assert_eq!(copy.read::<u64>(0).unwrap(), 5);
    let list = mproc::ShareableList::new([mproc::Item::Int(1)]).unwrap();
    assert_eq!(list.get(0).unwrap(), mproc::Item::Int(1));
    let raw = mproc::RawArray::from_slice(&[1u8, 2]).unwrap();
    assert_eq!(raw.to_vec(), vec![1, 2]);
    let err: mproc::Error = mproc::shm::SharedMemory::create(0).unwrap_err().into();
    assert!(matches!(err, mproc::Error::Shm(_)));
}

#[cfg(feature = "sync")]
#[test]
fn feature_sync_reexports_work() -> mproc::Result<()> {
    let v = mproc::Value::new(1u32)?;
    *v.lock()? += 1;
    assert_eq!(v.get()?, 2);
    let lock = mproc::Lock::new()?;
    let held = lock.lock()?;
    let err: mproc::Error = lock.try_lock().unwrap_err().into();
    assert!(
        matches!(err, mproc::Error::Sync(ref e) if e.kind() == mproc::sync::ErrorKind::Timeout)
    );
    drop(held);
    let arr = mproc::Array::<u8>::zeroed(2)?;
    let err: mproc::Error = arr.set(9, 1).unwrap_err().into();
    assert_eq!(err.kind(), mproc::ErrorKind::IndexOutOfRange);
    let sem = mproc::BoundedSemaphore::new(0)?;
    let err: mproc::Error = sem.release().unwrap_err().into();
    assert!(matches!(err, mproc::Error::Sync(_)));
    Ok(())
}

#[cfg(feature = "queue")]
#[test]
fn feature_queue_reexports_work() -> mproc::Result<()> {
    let q = mproc::Queue::<String>::bounded(4)?;
    q.put("smoke".to_string())?;
    assert_eq!(q.get()?, "smoke");
    assert!(matches!(q.try_get(), Err(mproc::GetError::Empty)));
    let j = mproc::JoinableQueue::<u8>::new()?;
    j.put(1)?;
    j.get()?;
    j.task_done()?;
    j.join().unwrap();
    let s = mproc::SimpleQueue::<u8>::new()?;
    s.put(2)?;
    assert_eq!(s.get()?, 2);
    let err: mproc::Error = q.try_get().unwrap_err().into();
    assert!(matches!(err, mproc::Error::Queue(_)));
    Ok(())
}

#[cfg(feature = "pool")]
fn double(x: u64) -> u64 {
    x * 2
}

/// Runs in a child, so that the pool's workers are not this test process's children (a
/// test beside this one checks that it has none).
#[cfg(feature = "pool")]
fn use_a_pool(n: u64) -> (u64, u64, u64, bool) {
    let pool = mproc::Pool::new(2).unwrap();
    let mapped: u64 = pool.map(double, 0..n).unwrap().iter().sum();
    // Through the trait both pools implement (`mproc::MpiPool` too, feature `mpi`).
    fn lazily(pool: &impl mproc::TaskPool, n: u64) -> u64 {
        pool.imap(double, 0..n).map(Result::unwrap).sum()
    }
    let imapped = lazily(&pool, n);
    let applied = pool.apply_async(double, n).unwrap().get().unwrap();
    let with_cb = pool
        .map_async_with(double, [1], None, mproc::Callbacks::new())
        .unwrap();
    let failed: mproc::Error = pool.apply(fail, ()).unwrap_err().into();
    pool.close();
    pool.join().unwrap();
    let cb_ok = with_cb.get().unwrap() == [2] && matches!(failed, mproc::Error::Pool(_));
    (mapped, imapped, applied, cb_ok)
}

#[cfg(feature = "pool")]
#[test]
fn feature_pool_reexports_work() {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = mproc::spawn(use_a_pool, 100).unwrap();
    let want = (0..100).map(double).sum::<u64>();
    assert_eq!(child.join().unwrap(), (want, want, 200, true));
    let b = mproc::pool::Builder::new()
        .processes(0)
        .build()
        .unwrap_err();
    assert_eq!(b.kind(), mproc::pool::ErrorKind::InvalidInput);
}

#[cfg(feature = "manager")]
fn push_twice(list: mproc::manager::List<u32>) -> usize {
    list.push(1).unwrap();
    list.push(2).unwrap();
    list.len().unwrap()
}

#[cfg(feature = "manager")]
#[test]
fn feature_manager_reexports_work() -> mproc::Result<()> {
    let _one_at_a_time = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    let manager = mproc::Manager::start()?;
    let list = manager.list::<u32>()?;
    let mut child = mproc::spawn(push_twice, list.clone())?;
    assert_eq!(child.join()?, 2);
    assert_eq!(list.to_vec()?, [1, 2]);
    let err: mproc::Error = list.get(5).unwrap_err().into();
    assert!(matches!(err, mproc::Error::Manager(_)));
    manager.shutdown()?;
    Ok(())
}

/// An error's chain, as a reporter walks it: each message at its own level, each cause once.
#[cfg(feature = "shm")]
#[test]
fn an_error_chain_names_each_cause_once() {
    let err: mproc::Error = mproc::SharedMemory::open("mproc-smoke-no-such-segment")
        .unwrap_err()
        .into();
    assert_eq!(err.kind(), mproc::ErrorKind::NotFound);
    let mut chain = vec![err.to_string()];
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    assert!(chain.len() >= 2, "the OS's error is a cause: {chain:?}");
    for (i, outer) in chain.iter().enumerate() {
        for inner in &chain[i + 1..] {
            assert!(
                !outer.contains(inner.as_str()),
                "{inner:?} repeated in {outer:?}"
            );
        }
    }
    // `main` returning it prints the message, then each cause once.
    let printed = format!("{err:?}");
    assert!(printed.starts_with(&chain[0]), "{printed}");
    for c in &chain[1..] {
        assert_eq!(printed.matches(c.as_str()).count(), 1, "{printed}");
    }
}
