#!/usr/bin/env python3
"""tests/test_ctypes.py — libweft.so driven from Python through ctypes.

Why: the C ABI exists so that other languages can use weft without a C++
runtime. This is the smallest such user: it loads libweft.so by path (no
headers, no compiler), declares the structs by hand, and runs Python
callbacks as task poll functions on weft's worker threads (ctypes takes the
GIL for each call). It checks outputs via weft_join_wait + weft_join_take,
a task that yields through its waker's vtable, a failure code, an abort,
drop callbacks (exactly once each), and weft_strerror / weft_version.

Usage: test_ctypes.py path/to/libweft.so   (or WEFT_LIB=... in the env)
"""
import ctypes
import os
import sys
import threading

WEFT_OK = 0
WEFT_EINVAL = -22
WEFT_ECANCELED = -125
WEFT_EAGAIN = -11
WEFT_EALREADY = -114
WEFT_EVERSION = -95
WEFT_PENDING = 0
WEFT_READY = 1
WEFT_MAX_OUTPUT = 4096

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("WEFT_LIB")
    if not path:
        print("usage: test_ctypes.py path/to/libweft.so")
        return 2
    lib = ctypes.CDLL(path)

    # ---- the ABI, declared by hand as an FFI user would ----
    class WakerVtable(ctypes.Structure):
        pass

    class Waker(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("vtable", ctypes.POINTER(WakerVtable))]

    WakerFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    WakerVtable._fields_ = [
        ("clone", ctypes.CFUNCTYPE(Waker, ctypes.c_void_p)),
        ("wake", WakerFn),
        ("wake_by_ref", WakerFn),
        ("drop", WakerFn),
    ]

    class Context(ctypes.Structure):
        _fields_ = [("waker", Waker)]

    PollFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Context), ctypes.c_void_p)
    DropFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    class TaskDesc(ctypes.Structure):
        _fields_ = [
            ("size", ctypes.c_size_t),
            ("poll", PollFn),
            ("drop", DropFn),
            ("data", ctypes.c_void_p),
            ("output_size", ctypes.c_size_t),
        ]

    class RuntimeConfig(ctypes.Structure):
        _fields_ = [
            ("size", ctypes.c_size_t),
            ("workers", ctypes.c_uint32),
            ("flags", ctypes.c_uint32),
            ("name", ctypes.c_char_p),
            ("clock", ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)),
            ("clock_ctx", ctypes.c_void_p),
            ("pulse", ctypes.c_void_p),  # const weft_pulse_config*; NULL = defaults
            ("failure_policy", ctypes.c_uint32),
            ("_reserved2", ctypes.c_uint32),
            ("on_failure", ctypes.c_void_p),  # int (*)(void*, const weft_failure*)
            ("on_failure_ctx", ctypes.c_void_p),
        ]

    class Failure(ctypes.Structure):
        _fields_ = [
            ("size", ctypes.c_size_t),
            ("kind", ctypes.c_int),
            ("code", ctypes.c_int),
            ("task_id", ctypes.c_uint64),
            ("message", ctypes.c_char_p),
        ]

    FailureFn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Failure))

    rt_p = ctypes.c_void_p
    join_p = ctypes.c_void_p
    lib.weft_version.restype = ctypes.c_int
    lib.weft_version_string.restype = ctypes.c_char_p
    lib.weft_strerror.restype = ctypes.c_char_p
    lib.weft_strerror.argtypes = [ctypes.c_int]
    lib.weft_runtime_config_init.argtypes = [ctypes.POINTER(RuntimeConfig)]
    lib.weft_runtime_new.argtypes = [ctypes.POINTER(RuntimeConfig), ctypes.POINTER(rt_p)]
    lib.weft_runtime_free.argtypes = [rt_p]
    lib.weft_runtime_workers.argtypes = [rt_p]
    lib.weft_runtime_workers.restype = ctypes.c_uint32
    lib.weft_spawn.argtypes = [rt_p, ctypes.POINTER(TaskDesc), ctypes.POINTER(join_p)]
    lib.weft_join_wait.argtypes = [join_p, ctypes.c_int64]
    lib.weft_join_status.argtypes = [join_p]
    lib.weft_join_take.argtypes = [join_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.weft_join_abort.argtypes = [join_p]
    lib.weft_join_free.argtypes = [join_p]
    lib.weft_join_task_id.argtypes = [join_p]
    lib.weft_join_task_id.restype = ctypes.c_uint64

    # ---- version and errors ----
    vs = lib.weft_version_string()
    check(vs is not None and vs.count(b".") == 2, "weft_version_string is MAJOR.MINOR.PATCH")
    major, minor, patch = (int(x) for x in vs.split(b"."))
    check(lib.weft_version() == major * 10000 + minor * 100 + patch, "weft_version() matches the string")
    for code in (WEFT_OK, WEFT_EINVAL, WEFT_ECANCELED, WEFT_EAGAIN, WEFT_EALREADY, WEFT_EVERSION, -1012, -99999):
        s = lib.weft_strerror(code)
        check(s is not None and len(s) > 0, "weft_strerror(%d) is a sentence" % code)

    # ---- runtime ----
    cfg = RuntimeConfig()
    lib.weft_runtime_config_init(ctypes.byref(cfg))
    check(cfg.size == ctypes.sizeof(RuntimeConfig), "config size matches the hand-written struct")
    cfg.workers = 2
    rt = rt_p()
    bad = RuntimeConfig()
    bad.size = 3
    check(lib.weft_runtime_new(ctypes.byref(bad), ctypes.byref(rt)) == WEFT_EVERSION, "bad config size")
    # A caller built against weft 0.1.0's header (no clock fields) still works.
    old = RuntimeConfig()
    lib.weft_runtime_config_init(ctypes.byref(old))
    old.size = RuntimeConfig.clock.offset
    old.workers = 1
    check(lib.weft_runtime_new(ctypes.byref(old), ctypes.byref(rt)) == 0, "0.1.0-sized config accepted")
    check(lib.weft_runtime_free(rt) == 0, "free the 0.1.0-config runtime")
    # A caller built against the header before failure containment.
    old.size = RuntimeConfig.failure_policy.offset
    check(lib.weft_runtime_new(ctypes.byref(old), ctypes.byref(rt)) == 0, "pre-failure-policy config accepted")
    check(lib.weft_runtime_free(rt) == 0, "free the pre-failure-policy runtime")

    # Failure containment: a Python handler sees detached tasks' reported.
    reported = []

    def on_failure(ctx, f):
        with lock:
            reported.append((f.contents.kind, f.contents.code, f.contents.task_id, f.contents.message))
        return 0

    failure_cb = FailureFn(on_failure)
    cfg.on_failure = ctypes.cast(failure_cb, ctypes.c_void_p)
    cfg.failure_policy = 3
    check(lib.weft_runtime_new(ctypes.byref(cfg), ctypes.byref(rt)) == WEFT_EINVAL, "unknown failure policy refused")
    cfg.failure_policy = 0
    check(lib.weft_runtime_new(ctypes.byref(cfg), ctypes.byref(rt)) == 0, "weft_runtime_new")
    check(lib.weft_runtime_workers(rt) == 2, "two workers")

    lock = threading.Lock()
    drops = {}
    polls = {}
    threads_seen = set()

    def on_drop(data):
        with lock:
            drops[data] = drops.get(data, 0) + 1

    # Task i: yields i times through its waker, then writes (i * 1000 + polls).
    def on_poll(data, cx, out):
        with lock:
            n = polls.get(data, 0) + 1
            polls[data] = n
            threads_seen.add(threading.get_ident())
        if data == 999:  # the never-finishing one
            return WEFT_PENDING
        if data in (666, 667):
            return -77  # a failure code
        if n <= data:
            w = cx.contents.waker
            w.vtable.contents.wake_by_ref(w.data)
            return WEFT_PENDING
        ctypes.c_int64.from_address(out).value = data * 1000 + n
        return WEFT_READY

    # The CFUNCTYPE objects must outlive every call the runtime makes.
    poll_cb = PollFn(on_poll)
    drop_cb = DropFn(on_drop)

    def spawn(data, output_size=8):
        d = TaskDesc(ctypes.sizeof(TaskDesc), poll_cb, drop_cb, data, output_size)
        j = join_p()
        rc = lib.weft_spawn(rt, ctypes.byref(d), ctypes.byref(j))
        check(rc == 0, "weft_spawn(%d) -> %d" % (data, rc))
        return j

    joins = {i: spawn(i) for i in range(1, 21)}
    ids = set()
    for i, j in joins.items():
        check(lib.weft_join_wait(j, -1) == 0, "wait %d" % i)
        out = ctypes.c_int64(0)
        check(lib.weft_join_take(j, ctypes.byref(out), 8) == 0, "take %d" % i)
        check(out.value == i * 1000 + i + 1, "output of %d: %d" % (i, out.value))
        check(lib.weft_join_take(j, ctypes.byref(out), 8) == WEFT_EALREADY, "second take of %d" % i)
        ids.add(lib.weft_join_task_id(j))
        lib.weft_join_free(j)
    check(len(ids) == 20 and 0 not in ids, "unique non-zero task ids")

    failing = spawn(666)
    check(lib.weft_join_wait(failing, -1) == 0, "wait failing")
    check(lib.weft_join_status(failing) == -77, "failure code is the status")
    lib.weft_join_free(failing)

    check(not reported, "a failure read through its join handle is not reported")
    d = TaskDesc(ctypes.sizeof(TaskDesc), poll_cb, drop_cb, 667, 0)
    check(lib.weft_spawn(rt, ctypes.byref(d), None) == 0, "spawn a detached failing task")
    for _ in range(60000):  # up to about 60 s, the suite's bound for a report that is due
        with lock:
            if reported:
                break
        threading.Event().wait(0.001)
    with lock:
        check(len(reported) == 1, "the detached failure reached the handler once: %r" % reported)
        if reported:
            kind, code, task_id, message = reported[0]
            check(kind == 1 and code == -77 and task_id != 0, "kind TASK, code -77, a task id: %r" % (reported[0],))
            check(message is not None and len(message) > 0, "the report has a message")

    never = spawn(999)
    while polls.get(999, 0) == 0:
        threading.Event().wait(0.001)
    check(lib.weft_join_status(never) == WEFT_EAGAIN, "not finished yet")
    check(lib.weft_join_abort(never) == 0, "abort")
    check(lib.weft_join_wait(never, -1) == 0, "wait aborted")
    check(lib.weft_join_status(never) == WEFT_ECANCELED, "aborted task reads as cancelled")
    lib.weft_join_free(never)

    # Bad input from Python: a NULL poll is refused and the drop still runs.
    d = TaskDesc(ctypes.sizeof(TaskDesc), PollFn(), drop_cb, 4242, 0)
    check(lib.weft_spawn(rt, ctypes.byref(d), None) == WEFT_EINVAL, "NULL poll refused")

    check(lib.weft_runtime_free(rt) == 0, "weft_runtime_free")

    with lock:
        for i in list(range(1, 21)) + [666, 999, 4242]:
            check(drops.get(i, 0) == 1, "drop of %d ran once (%d)" % (i, drops.get(i, 0)))
        check(polls.get(999) == 1, "the aborted task was polled once")
        check(threading.get_ident() not in threads_seen, "callbacks ran on weft's workers")

    if failures:
        print("test_ctypes: %d failure(s)" % len(failures))
        return 1
    print("test_ctypes: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
