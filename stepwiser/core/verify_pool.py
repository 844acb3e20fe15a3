"""The verifier processes behind `stepwiser.core.verify`: a pool of math-verify workers with hard timeouts.

Each worker is a plain subprocess (``python -c ...``) that imports math-verify and answers one JSON
object a line over its stdin/stdout: {"i", "a" (answer), "r" (reference)} -> {"i", "s" (status),
"d" (detail)}. Plain subprocesses (not ``multiprocessing``) so that a pool can be started from any
thread, from a daemonic ``multiprocessing`` worker, and again in a forked child. A check that has not
answered within its timeout gets its worker killed (SIGKILL, reaped) and replaced; the replacement
starts while the caller goes on, and its start-up never counts against a check's timeout. The pool
starts on first use (or `start()`) and stops at interpreter exit, at a ``multiprocessing`` child's
exit, or on `shutdown()`. A worker also exits by itself at EOF on stdin or when its parent dies.
POSIX only (``poll``).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import SimpleQueue

STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may take to import math-verify (not part of any timeout)


# --------------------------------------------------------------------------- worker side (in the subprocess)

_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from stepwiser.core.verify_pool import worker_main; worker_main()"


def worker_main() -> None:
    """The verifier subprocess: one {"i", "a", "r"} request a line on stdin, one {"i", "s", "d"} reply
    a line on stdout, until EOF."""
    import functools
    import logging
    import signal

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by libraries goes to stderr, never into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; we exit at EOF
    parent = os.getppid()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()

    @functools.lru_cache(maxsize=4096)
    def parse_gold(ref: str) -> tuple:
        return tuple(parse("\\boxed{" + ref + "}", parsing_timeout=None))

    def compare(answer: str, ref: str) -> tuple[str, str]:
        gold = list(parse_gold(ref))
        if not gold:
            return "error", "math-verify could not parse the reference answer"
        pred = parse("\\boxed{" + answer + "}", parsing_timeout=None)
        if not pred:
            return "unparsed", "math-verify could not parse the answer"
        ok = verify(gold, pred, timeout_seconds=None)
        return ("correct" if ok else "incorrect"), ""

    compare("1", "1")  # warm up sympy and the LaTeX grammar before reporting ready
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        req = json.loads(line)
        try:
            status, detail = compare(req["a"], req["r"])
        except Exception as e:  # noqa: BLE001 - a failure inside math-verify/sympy is a result
            status, detail = "error", f"{type(e).__name__}: {str(e)[:200]}"
        out.write(json.dumps({"i": req["i"], "s": status, "d": detail}).encode() + b"\n")
        out.flush()


# --------------------------------------------------------------------------- parent side

class _WorkerDied(RuntimeError):
    """The worker process exited (killed, crashed)."""


class _StartFailed(_WorkerDied):
    """The worker process exited before it was ready."""


class _Worker:
    """One verifier subprocess, spoken to with one JSON object a line over its stdin/stdout."""

    def __init__(self) -> None:
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, pkg_parent], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0, close_fds=True)
        self._fd = self.proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._buf = b""
        self._next_id = 0
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        """One line from the worker, or None if `deadline` (time.monotonic) passes first."""
        while b"\n" not in self._buf:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
            if not self._poll.poll(wait_ms):
                if time.monotonic() >= deadline:
                    return None
                continue
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise _WorkerDied(f"verifier process exited with code {self.proc.wait()}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self.proc.stdin.write(view):]
        except (BrokenPipeError, OSError) as e:
            raise _WorkerDied(f"verifier process is gone ({e})") from None

    def wait_ready(self) -> None:
        """Wait for the worker's ready line (start-up does not count against any check's timeout)."""
        try:
            line = self._readline(time.monotonic() + STARTUP_TIMEOUT)
        except _WorkerDied as e:
            raise _StartFailed(str(e)) from None
        if line is None:
            raise RuntimeError(f"a verifier process did not start within {STARTUP_TIMEOUT:g}s")
        self.ready = True

    def call(self, answer: str, reference: str, timeout: float) -> tuple[str, str] | None:
        """(status, detail), or None on timeout (the caller must then kill this worker)."""
        if not self.ready:
            self.wait_ready()
        self._next_id += 1
        self._send(json.dumps({"i": self._next_id, "a": answer, "r": reference}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            if line is None:
                return None
            reply = json.loads(line)
            if reply.get("i") == self._next_id:  # anything else is a stale reply
                return reply["s"], reply["d"]

    def close(self, grace: float = 1.0) -> None:
        """Close stdin (the worker exits at EOF), kill it if it has not exited within `grace`, reap it."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class _Pool:
    """A fixed set of verifier processes handed out one at a time to the calling threads."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: SimpleQueue[_Worker] = SimpleQueue()
        self._workers: set[_Worker] = set()
        self.size = 0
        self.closed = False
        self.grow(size)

    def grow(self, size: int) -> None:
        with self._lock:
            while self.size < size:
                w = _Worker()
                self._workers.add(w)
                self._idle.put(w)
                self.size += 1

    def _replace(self, w: _Worker) -> _Worker:
        w.close(grace=0)
        if self.closed:
            raise RuntimeError("the verifier pool was shut down during a check")
        with self._lock:
            self._workers.discard(w)
            new = _Worker()
            self._workers.add(new)
        return new

    def run(self, answer: str, reference: str, timeout: float) -> tuple[str, str]:
        """(status, detail) of math-verify on one pair, using the next idle worker."""
        w = self._idle.get()
        try:
            for attempt in range(2):  # a worker that died while idle gets one fresh retry
                try:
                    reply = w.call(answer, reference, timeout)
                except _WorkerDied as e:
                    w = self._replace(w)
                    if attempt and isinstance(e, _StartFailed):
                        raise RuntimeError(f"a verifier process failed to start ({e}); its error is on "
                                           "stderr (is math-verify installed?)") from None
                    if attempt:
                        return "error", str(e)
                    continue
                if reply is None:
                    w = self._replace(w)
                    return "timeout", f"no result within {timeout:g}s"
                return reply
            raise AssertionError("unreachable")
        except BaseException:  # interrupted (Ctrl-C, failed start): the worker's state is unknown
            w = self._replace(w)
            raise
        finally:
            self._idle.put(w)

    def wait_ready(self) -> None:
        """Wait until every worker has started (taking them all from the idle queue meanwhile)."""
        taken = [self._idle.get() for _ in range(self.size)]
        try:
            for w in taken:
                if not w.ready:
                    w.wait_ready()  # a dead one raises here, and is replaced by its next `run`
        finally:
            for w in taken:
                self._idle.put(w)

    def close(self) -> None:
        self.closed = True
        with self._lock:
            workers, self._workers = list(self._workers), set()
            self.size = 0
        for w in workers:
            w.close(grace=0.5)


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()
_EXITING = False
_FINALIZER_PID = 0


def default_workers() -> int:
    """Pool size when none is given: the usable CPUs, at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


def get_pool(min_size: int | None = None) -> _Pool:
    global _POOL, _FINALIZER_PID
    with _POOL_LOCK:
        if _EXITING:
            raise RuntimeError("the verifier pool is shut down (interpreter exiting)")
        if _POOL is None or _POOL.pid != os.getpid():  # after a fork, never touch the parent's pipes
            _POOL = _Pool(max(default_workers(), min_size or 0))
            if "multiprocessing" in sys.modules and _FINALIZER_PID != os.getpid():
                from multiprocessing import util as mp_util  # multiprocessing children skip atexit

                mp_util.Finalize(None, shutdown, exitpriority=0)
                _FINALIZER_PID = os.getpid()
        pool = _POOL
    if min_size and pool.size < min_size:
        pool.grow(min_size)
    return pool


def start(workers: int | None = None) -> int:
    """Start the verifier processes now (at least `workers`) and wait until they are ready, e.g. while
    a stage loads its model; checks start the pool by themselves otherwise. Returns the pool size.
    RuntimeError if a verifier process cannot start."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    pool = get_pool(workers)
    pool.wait_ready()
    return pool.size


def shutdown() -> None:
    """Stop the verifier processes now (they restart on the next check). Not while checks run."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


def _shutdown_at_exit() -> None:
    global _EXITING
    _EXITING = True
    shutdown()


def _forget_pool_in_child() -> None:  # a forked child starts its own pool; never use the parent's pipes
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


atexit.register(_shutdown_at_exit)
os.register_at_fork(after_in_child=_forget_pool_in_child)
