#!/usr/bin/env python3
"""Python multiprocessing's figures for the keys mproc measures, on this machine, now.

Run by `cargo xtask bench --vs-python`. Prints one JSON object on its last line, with the
same dotted keys as mproc's bench (nested: {"spawn_join_us": {"fork": ...}}).

The script is its own minimal __main__ (spawn and forkserver children re-import the main
module, so a big main would be charged to them), as in shared/bench/python_baseline.py.
"""
import json
import multiprocessing as mp
import os
import sys
import time

pc = time.perf_counter_ns


def noop():
    pass


def med(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def spawn_join_us(method, n, warm=2):
    ctx = mp.get_context(method)
    for _ in range(warm):  # starts the forkserver, warms the page cache
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    ts = []
    for _ in range(n):
        t0 = pc()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        ts.append((pc() - t0) / 1e3)
        assert p.exitcode == 0
    return med(ts)


def _pin(cpu):
    if len(os.sched_getaffinity(0)) > 1 or os.cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def _pipe_echo(conn):
    _pin(1)  # as mproc's bench: the echoing child on CPU 1, the parent on CPU 0
    recv, send = conn.recv, conn.send
    while True:
        x = recv()
        if x is None:
            break
        send(x + 1)


def pipe_rtt_us(n):
    ctx = mp.get_context("fork")
    old = os.sched_getaffinity(0)
    _pin(0)
    a, b = ctx.Pipe(duplex=True)
    p = ctx.Process(target=_pipe_echo, args=(b,))
    p.start()
    b.close()
    for i in range(1000):
        a.send(i)
        a.recv()
    ts = []
    for i in range(n):
        t0 = pc()
        a.send(i)
        a.recv()
        ts.append((pc() - t0) / 1e3)
    a.send(None)
    p.join()
    os.sched_setaffinity(0, old)
    return med(ts)


def _pipe_bytes_sender(conn, nmsg, size):
    _pin(1)
    payload = b"\x5a" * size
    for _ in range(nmsg + 1):
        conn.send_bytes(payload)
    conn.close()


def pipe_bytes_gbps(nmsg, size=1 << 20):
    ctx = mp.get_context("fork")
    old = os.sched_getaffinity(0)
    _pin(0)
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_pipe_bytes_sender, args=(w, nmsg, size))
    p.start()
    w.close()
    r.recv_bytes()
    t0 = pc()
    got = 0
    for _ in range(nmsg):
        got += len(r.recv_bytes())
    dt = pc() - t0
    p.join()
    os.sched_setaffinity(0, old)
    return got / dt  # bytes per ns = GB/s


def _lock_incr(v, n, barrier, ends, idx):
    lock = v.get_lock()
    barrier.wait()
    for _ in range(n):
        with lock:
            v.value += 1
    ends[idx] = time.time_ns()


def lock_value_ops_per_s(n_each):
    """2 processes x n_each increments of a locked Value; the clock is the wall clock, as
    mproc's bench reads it (comparable across processes)."""
    ctx = mp.get_context("fork")
    v = ctx.Value("q", 0)
    barrier = ctx.Barrier(3)
    ends = ctx.RawArray("q", 2)
    procs = [ctx.Process(target=_lock_incr, args=(v, n_each, barrier, ends, i)) for i in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.time_ns()
    for p in procs:
        p.join()
    return 2 * n_each / ((max(ends[:]) - t0) / 1e9), v.value == 2 * n_each


def lock_uncontended_ns(n):
    lock = mp.get_context("fork").Lock()
    acq, rel = lock.acquire, lock.release
    t0 = pc()
    for _ in range(n):
        acq()
        rel()
    return (pc() - t0) / n


def _shm_writer(shm, size, chunk, res):
    """As mproc's bench: fill the fresh segment, fill it warm (the figure), then write it
    warm in 1 MiB copies (how shared/bench/python_baseline.py writes it)."""
    import ctypes
    mv = shm.buf
    buf = (ctypes.c_char * size).from_buffer(mv)
    ctypes.memset(buf, 0xab, size)  # fresh: the pages get allocated
    t0 = pc()
    ctypes.memset(buf, 0xee, size)
    res[0] = pc() - t0
    del buf
    block = b"\xcd" * chunk
    t0 = pc()
    for off in range(0, size, chunk):
        mv[off:off + chunk] = block
    res[1] = pc() - t0
    del mv


def shm_gbps(size, chunk=1 << 20):
    """A child writes a warm segment: (fill GB/s, 1 MiB copies GB/s, bytes right)."""
    from multiprocessing import shared_memory
    ctx = mp.get_context("fork")
    shm = shared_memory.SharedMemory(create=True, size=size)
    try:
        res = ctx.RawArray("q", 2)
        p = ctx.Process(target=_shm_writer, args=(shm, size, chunk, res))
        p.start()
        p.join()
        ok = p.exitcode == 0 and all(bytes(shm.buf[o:o + chunk]) == b"\xcd" * chunk for o in range(0, size, chunk))
        return size / res[0], size / res[1], ok
    finally:
        shm.close()
        shm.unlink()


def _q_producer(q, n, barrier, spans, idx):
    barrier.wait()
    t0 = pc()
    put = q.put
    for i in range(n):
        put(i)
    spans[2 * idx], spans[2 * idx + 1] = t0, pc()


def _q_consumer(q, n, barrier, spans, idx):
    barrier.wait()
    t0 = pc()
    get = q.get
    for _ in range(n):
        get()
    spans[2 * idx], spans[2 * idx + 1] = t0, pc()


def _q_big_producer(q, n, barrier, spans, idx):
    payload = b"\x5a" * (1 << 20)
    barrier.wait()
    t0 = pc()
    for _ in range(n):
        q.put(payload)
    spans[2 * idx], spans[2 * idx + 1] = t0, pc()


def _q_big_consumer(q, n, barrier, spans, idx):
    barrier.wait()
    t0 = pc()
    total = 0
    for _ in range(n):
        total += len(q.get())
    assert total == n << 20
    spans[2 * idx], spans[2 * idx + 1] = t0, pc()


def _queue_run(nprod, ncons, total, prod, cons):
    """Items per ns over first child start (after the barrier) to last child end, each
    child stamping its own span: mproc's bench times the same way."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    barrier = ctx.Barrier(nprod + ncons + 1)
    spans = ctx.RawArray("q", 2 * (nprod + ncons))
    procs = [ctx.Process(target=prod, args=(q, total // nprod, barrier, spans, i)) for i in range(nprod)]
    procs += [ctx.Process(target=cons, args=(q, total // ncons, barrier, spans, nprod + i)) for i in range(ncons)]
    for p in procs:
        p.start()
    barrier.wait()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return total / (max(spans[1::2]) - min(spans[0::2]))


def queue_msgs_per_s(nprod, ncons, total):
    return _queue_run(nprod, ncons, total, _q_producer, _q_consumer) * 1e9


def queue_1mib_gbps(n):
    return _queue_run(1, 1, n, _q_big_producer, _q_big_consumer) * (1 << 20)  # bytes/ns


def _q_echo(ping, pong):
    while True:
        x = ping.get()
        if x is None:
            break
        pong.put(x + 1)


def queue_rtt_us(rounds, n):
    """Median µs of a round trip through two queues, over `rounds` batches of `n`."""
    ctx = mp.get_context("fork")
    ping, pong = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_q_echo, args=(ping, pong))
    p.start()
    out = []
    for r in range(rounds + 1):
        t0 = pc()
        for i in range(n):
            ping.put(i)
            assert pong.get() == i + 1
        if r > 0:
            out.append((pc() - t0) / n / 1e3)
    ping.put(None)
    p.join()
    return med(out)


def ident(x):
    return x


def cpu_task(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def pool_figures(quick):
    """Pool(2) (fork, as Python's Pool has used on Linux) kept warm across the figures."""
    out = {"trivial": [], "chunksize1": [], "speedup": []}
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(ident, range(1000))
        for _ in range(3):
            n = 1_000_000
            t0 = pc()
            r = pool.map(ident, range(n))
            out["trivial"].append(n / ((pc() - t0) / 1e9))
            assert r[-1] == n - 1
            n = 10_000 if quick else 20_000
            t0 = pc()
            r = pool.map(ident, range(n), 1)
            out["chunksize1"].append(n / ((pc() - t0) / 1e9))
            inputs = [500_000 if quick else 1_000_000] * 16
            t0 = pc()
            serial = [cpu_task(x) for x in inputs]
            t_serial = pc() - t0
            t0 = pc()
            par = pool.map(cpu_task, inputs)
            out["speedup"].append(t_serial / (pc() - t0))
            assert serial == par
    return {
        "pool_map_tasks_per_s": {
            "trivial": round(med(out["trivial"])),
            "chunksize1": round(med(out["chunksize1"])),
        },
        "pool_cpu_speedup": round(med(out["speedup"]), 2),
    }


def executor_figures(quick):
    """ProcessPoolExecutor(2) on the fork context, as the Pool figures use, warm (both
    workers started): n trivial tasks submitted one by one, then every result taken in
    order (executor_submit_per_s), or taken as as_completed yields them
    (executor_as_completed_per_s). mproc's bench times the same two loops."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    n = 10_000 if quick else 20_000
    submitted, gathered = [], []
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        [f.result() for f in [ex.submit(ident, i) for i in range(1000)]]
        for _ in range(3):
            t0 = pc()
            futs = [ex.submit(ident, i) for i in range(n)]
            r = [f.result() for f in futs]
            submitted.append(n / ((pc() - t0) / 1e9))
            assert r == list(range(n))
            t0 = pc()
            futs = [ex.submit(ident, i) for i in range(n)]
            total = sum(f.result() for f in as_completed(futs))
            gathered.append(n / ((pc() - t0) / 1e9))
            assert total == n * (n - 1) // 2
    return {
        "executor_submit_per_s": round(med(submitted)),
        "executor_as_completed_per_s": round(med(gathered)),
    }


MGR_N = 20_000


def _mgr_value(i):
    return (i * 0x9E3779B97F4A7C15 % (1 << 64)) >> 7


def _mgr_append(lst, n, res):
    """A child appends n items, one call each, timing its own loop (after one untimed call
    that opens its connection): calls per second in res[0]."""
    _pin(1)
    assert len(lst) == 0
    append = lst.append
    t0 = pc()
    for i in range(n):
        append(i)
    res[0] = n / ((pc() - t0) / 1e9)


def _mgr_set_get(d, n, res):
    """A child sets keys 0..n, then gets each: 2n calls (one op = one `d[k] = v` or one
    `d.get(k)`, each a round trip to the server); calls per second in res[0], and in res[1]
    whether every get returned the value set."""
    _pin(1)
    assert len(d) == 0
    setitem, get = d.__setitem__, d.get
    ok = True
    t0 = pc()
    for i in range(n):
        setitem(i, _mgr_value(i))
    for i in range(n):
        ok &= get(i) == _mgr_value(i)
    res[0] = 2 * n / ((pc() - t0) / 1e9)
    res[1] = float(ok)


def manager_figures(rounds, n=MGR_N):
    """Manager() (fork, Python's default on Linux) with its server on CPU 0 and each calling
    child on CPU 1, as mproc's bench places them; one manager for every round, a fresh list
    and dict per round."""
    ctx = mp.get_context("fork")
    old = os.sched_getaffinity(0)
    _pin(0)  # the server, forked from here, inherits CPU 0
    lists, dicts, ok = [], [], True
    try:
        with ctx.Manager() as m:
            os.sched_setaffinity(0, old)
            for r in range(rounds + 1):  # round 0 warms up
                res = ctx.RawArray("d", 2)
                lst = m.list()
                p = ctx.Process(target=_mgr_append, args=(lst, n, res))
                p.start()
                p.join()
                assert p.exitcode == 0, p.exitcode
                list_rate = res[0]
                ok &= lst[:] == list(range(n))
                d = m.dict()
                p = ctx.Process(target=_mgr_set_get, args=(d, n, res))
                p.start()
                p.join()
                assert p.exitcode == 0, p.exitcode
                ok &= res[1] == 1.0 and len(d) == n
                if r > 0:
                    lists.append(list_rate)
                    dicts.append(res[0])
    finally:
        os.sched_setaffinity(0, old)
    return {
        "manager_list_ops_per_s": round(med(lists)),
        "manager_dict_ops_per_s": round(med(dicts)),
        "manager_check_ok": ok,
    }


def main():
    quick = "--quick" in sys.argv
    if "--only-manager" in sys.argv:
        # As mproc's --only-manager: the manager figures and the pipe round trip.
        out = {"pipe_rtt_us": round(pipe_rtt_us(5000 if quick else 20000), 2)}
        out.update(manager_figures(3 if quick else 5))
        print(json.dumps(out))
        return
    if "--only-pool" in sys.argv:
        # As mproc's --only-pool: the pool and executor figures.
        out = pool_figures(quick)
        out.update(executor_figures(quick))
        print(json.dumps(out))
        return
    counts = {"fork": 50 if quick else 150, "forkserver": 30 if quick else 80, "spawn": 10 if quick else 30}
    out = {"spawn_join_us": {m: round(spawn_join_us(m, n), 1) for m, n in counts.items()}}
    out["pipe_rtt_us"] = round(pipe_rtt_us(5000 if quick else 20000), 2)
    out["pipe_bytes_gbps"] = round(med([pipe_bytes_gbps(256 if quick else 1024) for _ in range(3)]), 2)
    lv = [lock_value_ops_per_s(50_000) for _ in range(3 if quick else 7)]
    out["lock_value_ops_per_s"] = round(med([x[0] for x in lv]))
    out["check_ok"] = all(x[1] for x in lv)
    out["lock_uncontended_ns"] = round(med([lock_uncontended_ns(200_000 if quick else 1_000_000) for _ in range(3)]), 1)
    sh = [shm_gbps(256 << 20) for _ in range(2 if quick else 3)]
    out["shm_gbps"] = round(med([x[0] for x in sh]), 2)
    out["extra"] = {"shm_copy_gbps": round(med([x[1] for x in sh]), 2)}
    out["shm_check_ok"] = all(x[2] for x in sh)
    qn = 100_000 if quick else 200_000
    out["queue_msgs_per_s"] = {
        "1p1c": round(med([queue_msgs_per_s(1, 1, qn) for _ in range(3)])),
        "2p2c": round(med([queue_msgs_per_s(2, 2, qn) for _ in range(3)])),
    }
    out["queue_rtt_us"] = round(queue_rtt_us(3, 2000 if quick else 5000), 2)
    out["queue_1mib_gbps"] = round(med([queue_1mib_gbps(128 if quick else 256) for _ in range(3)]), 2)
    out.update(pool_figures(quick))
    out.update(executor_figures(quick))
    out.update(manager_figures(3 if quick else 5))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
