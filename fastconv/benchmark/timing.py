"""Timing: one checked first call, then interleaved samples of every runner, median.

  Runner            a label and a zero-argument callable (an engine, the NumPy baseline, torch)
  first_call        the first call, its output and what went wrong (n/a, error) if anything
  time_interleaved  warm-up, then ``repeat`` interleaved samples of every runner
  speedup           one runner's speed-up over another, round by round where possible
  NumbaWarmup       the numba kernels a run needs, compiled (or loaded from numba's on-disk
                    cache) in a background thread while the untimed work goes on

How a sample is taken: calls are repeated within one sample until it lasts ``MIN_SAMPLE_S``
(so the clock's resolution does not matter). Round r starts with runner r mod n, so every
runner sees the same machine load on average. Before each interleaved sample the harness
waits until the process's other threads have stopped running (``Settle``: the other runners'
OpenMP threads spin for milliseconds after a call before they sleep) and makes one untimed
call of the same runner (which wakes its own thread pool): each runner is timed as if alone
on the machine, with its threads awake, as in a loop of calls (the C engine's pool also
forgets the time it saw lost to other programs, ``Settle``). The NumPy baseline is the
exception: OpenBLAS's worker threads keep spinning for a while after each call, which starves
the next runner's threads when there are as many threads as cores, so its samples are taken
in one block after the interleaved rounds.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

#: Shortest sample: calls are repeated within one sample until it lasts this long.
MIN_SAMPLE_S = 0.002
#: Shortest busy pause before each interleaved sample (see Settle). OpenMP runtimes (the C
#: engine's pool, numba's and torch's each have their own) keep their threads spinning after
#: a parallel region, and with as many threads as cores those threads slow the next runner's:
#: on 2 cores a 53 us torch call took 79 us right after a C engine call, and 56 us after a
#: 3 ms pause. The pause spins rather than sleeps: after a sleep the idle virtual CPUs of
#: the test machine woke only on the next 4 ms scheduler tick (samples of 8, 16, 32 ms).
SETTLE_S = 0.003
#: Longest pause, and how often Settle looks again. torch's libgomp workers went on spinning
#: 8-10 ms after a call on a 2-vCPU AMD EPYC guest (their CPU time, read from /proc), where
#: the C engine's 2-thread calls made 3 ms after a torch call ran 1.5-1.9x slower than 50 ms
#: after it, and `fastconv bench` had every conv class below torch at 2 threads.
SETTLE_MAX_S = 0.1
SETTLE_POLL_S = 0.0005


@dataclass
class Runner:
    label: str  # engine name, "numpy" or "torch"
    fn: Callable[[], Any]
    interleave: bool = True  # False: timed in a block of its own, after the others


def first_call(fn: Callable[[], Any]) -> Tuple[Any, float, Optional[Tuple[str, str]]]:
    """(output, seconds, None) or (None, seconds, (status, message)): status "n/a" when the
    runner lacks the op here, "error" when it raised anything else."""
    t0 = time.perf_counter()
    try:
        y = fn()
    except NotImplementedError as exc:
        return None, time.perf_counter() - t0, ("n/a", str(exc) or "not implemented")
    except ValueError as exc:
        msg = str(exc)
        if "does not implement" in msg or "unavailable" in msg:
            return None, time.perf_counter() - t0, ("n/a", msg)
        return None, time.perf_counter() - t0, ("error", f"ValueError: {msg}")
    except Exception as exc:  # an engine being written must not stop the others' figures
        return None, time.perf_counter() - t0, ("error", f"{type(exc).__name__}: {exc}")
    return y, time.perf_counter() - t0, None


def _time_calls(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _warm_up(fn: Callable[[], Any]) -> float:
    """Call ``fn`` until the calls have lasted ``MIN_SAMPLE_S`` (once if one call lasts that
    long); the fastest call's seconds. The first calls after a pause can be several times
    slower than the rest (cold caches and threads: a 30 us pooling call took 130-380 us,
    then 35-90, 30 from the fourth on), so one call would size the samples for a time the
    loop does not keep: 6 calls per sample instead of 56, a median of the slow start."""
    best = math.inf
    end = time.perf_counter() + MIN_SAMPLE_S
    while True:
        t = _time_calls(fn, 1)
        best = min(best, t)
        if time.perf_counter() >= end:
            return best


def _spin(seconds: float) -> None:
    """Wait ``seconds`` without sleeping (see SETTLE_S)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _running_threads(skip: Set[str]) -> Optional[Set[str]]:
    """The process's other threads the OS shows running (state R: on a core or waiting for
    one), less ``skip``; None where /proc cannot tell (not Linux)."""
    me = str(threading.get_native_id())
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    running = set()
    for tid in tids:
        if tid == me or tid in skip:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread has ended
            continue
        end = stat.rfind(b")")  # the name, in parentheses, may hold anything
        if stat[end + 2 : end + 3] == b"R":
            running.add(tid)
    return running


def _forget_losses() -> Optional[Callable[[], None]]:
    """The C engine's ``fc_pool_forget_losses`` (None without the engine). Its thread pool
    remembers time lost to other programs and runs short calls on one thread after a few
    losses, until a probe finds the loss gone (csrc/parallel.c); a sample timed as if alone
    on the machine starts from a quiet machine's state."""
    from ..backends import c

    if c.AVAILABLE_REASON != "available":
        return None
    return getattr(c.lib, "fc_pool_forget_losses", None)  # None: an extension built before it


class Settle:
    """The pause before each interleaved sample: at least ``SETTLE_S``, then until no other
    thread of the process runs (the runners' OpenMP workers have gone to sleep), at most
    ``SETTLE_MAX_S``. A thread still running after that long is not a worker winding down
    (another program's thread in this process, say): later pauses of the same timing (one
    ``time_interleaved``) do not wait for it. Then the C engine's pool forgets the time it
    saw lost to other programs (_forget_losses)."""

    def __init__(self) -> None:
        self.ignored: Set[str] = set()
        self.longest_s = 0.0  # the longest pause so far
        self.forget = _forget_losses()

    def __call__(self) -> None:
        t0 = time.perf_counter()
        _spin(SETTLE_S)
        running = _running_threads(self.ignored)
        while running:
            if time.perf_counter() - t0 > SETTLE_MAX_S:
                self.ignored |= running
                break
            _spin(SETTLE_POLL_S)
            running = _running_threads(self.ignored)
        if self.forget is not None:
            self.forget()
        self.longest_s = max(self.longest_s, time.perf_counter() - t0)


def speedup(base: Dict[str, Any], res: Dict[str, Any]) -> float:
    """base's time over res's. Runners timed in the same interleaved rounds are compared
    round by round (the median of the per-round ratios), which cancels the machine's drift
    between rounds (another process waking up slows every runner of a round alike); others
    (the NumPy baseline, timed in its own block) by the ratio of their medians."""
    sb, sr = base.get("samples_s"), res.get("samples_s")
    if base.get("interleaved") and res.get("interleaved") and sb and sr and len(sb) == len(sr):
        return statistics.median(b / r for b, r in zip(sb, sr))
    return base["median_s"] / res["median_s"]


def time_interleaved(runners: Sequence[Runner], repeat: int, budget_s: float) -> Dict[str, Dict]:
    """Warm up, then ``repeat`` interleaved samples of each runner (fewer, but at least 3,
    when that would take over ``budget_s``). Returns per-runner stats in seconds per call."""
    calls: Dict[str, int] = {}
    per_round = 0.0
    mixed = [r for r in runners if r.interleave]
    for r in runners:
        t = _warm_up(r.fn)
        calls[r.label] = max(1, math.ceil(MIN_SAMPLE_S / max(t, 1e-9)))
        per_round += t * (calls[r.label] + (r in mixed))  # the sample and its lead-in call
    settle = Settle()
    settle()  # as long as a pause after the last warm-up: one per interleaved sample
    per_round += settle.longest_s * len(mixed)
    rounds = max(1, repeat)
    if per_round * rounds > budget_s:
        rounds = max(min(3, rounds), int(budget_s / max(per_round, 1e-9)))
    samples: Dict[str, List[float]] = {r.label: [] for r in runners}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(rounds):
            k = i % max(len(mixed), 1)
            for r in mixed[k:] + mixed[:k]:
                settle()  # the previous runner's threads stop spinning
                r.fn()  # lead-in: wakes this runner's threads
                samples[r.label].append(_time_calls(r.fn, calls[r.label]))
        for r in runners:
            if not r.interleave:
                for _ in range(rounds):
                    samples[r.label].append(_time_calls(r.fn, calls[r.label]))
    finally:
        if gc_was:
            gc.enable()
    return {
        label: {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "samples_s": s,
            "calls_per_sample": calls[label],
            "interleaved": label in {r.label for r in mixed},
        }
        for label, s in samples.items()
    }


# --------------------------------------------------------------------------- numba's JIT


class NumbaWarmup:
    """Compile the numba kernels a run needs before any of them is timed.

    The numba engine compiles each kernel on its first call, once per dtype (never per
    shape), and keeps the machine code in numba's on-disk cache (``__pycache__`` beside
    ``fastconv/backends/numba_cpu``, or ``NUMBA_CACHE_DIR``). On a machine's first run that
    is seconds per op, which a benchmark would otherwise spend silently inside its first
    numba call. ``start`` runs ``calls`` (one small call per op the run needs: compiling
    depends on the op and dtype, not the shape) in a background thread; the run goes on with
    the work that is not timed (reference outputs, the other runners' checks) and calls
    ``wait`` before it checks or times numba. Nothing is timed while it compiles: a compiler
    beside the timed code would take a core (and Python's lock) from it.

    ``notice`` is called once, with the ops not ready yet and the number of helper processes
    started (below), as soon as one op takes longer than ``notice_after_s`` (cached kernels
    load in well under a second, compiling takes seconds); ``compiling`` then stays True.

    Numba compiles one kernel at a time per process. So once it is compiling, if ``helper``
    is given and the machine has cores to spare, the ops not started yet are shared out
    (longest first, by ``weights``, to the least loaded) between the thread and helper
    processes: ``helper(ops)`` starts one that compiles ``ops`` into the on-disk cache (or
    returns None). An op that ``needs`` the kernels of others (separable: depthwise and 1x1
    conv; a whole model) stays with the thread, after the ops it needs. The thread, done with
    its share, waits for the helpers and loads theirs from the cache (or compiles what a
    helper could not).
    """

    def __init__(self, calls: Dict[str, Callable[[], Any]],
                 notice: Optional[Callable[[Sequence[str], int], None]] = None,
                 notice_after_s: float = 2.0,
                 helper: Optional[Callable[[List[str]], Any]] = None,
                 cores: Optional[int] = None,
                 weights: Optional[Dict[str, float]] = None,
                 needs: Optional[Dict[str, Sequence[str]]] = None):
        self.calls = calls
        self.notice = notice
        self.notice_after_s = notice_after_s
        self.helper = helper
        self.cores = cores if cores is not None else (os.cpu_count() or 1)
        self.weights = weights or {}
        self.needs = needs or {}
        self.seconds: Dict[str, float] = {}  # op -> its call in this process
        self.errors: Dict[str, str] = {}
        self.wall_s = 0.0  # from start to the last kernel ready
        self.compiling = False
        self.handed_off: Dict[str, int] = {}  # op -> helper number (1, 2, ...)
        self._after: List[str] = []  # the thread's ops that wait for the helpers
        self._t0 = 0.0
        self._helpers: List[Any] = []
        self._next = 0  # index of the next op the thread starts
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def plan(self, current: str, rest: Sequence[str], helpers: int) -> Dict[str, int]:
        """Who compiles which of ``rest`` while the thread compiles ``current``: op -> 0 (the
        thread), -1 (the thread, once the helpers are done) or k >= 1 (helper k)."""
        loads = [self.weights.get(current, 1.0)] + [0.0] * helpers
        owner: Dict[str, int] = {current: 0}
        for op in sorted(rest, key=lambda o: -self.weights.get(o, 1.0)):
            if op in self.needs:
                continue
            k = min(range(len(loads)), key=lambda i: (loads[i], -i))  # ties: a helper
            owner[op] = k
            loads[k] += self.weights.get(op, 1.0)
        for op in rest:
            if op in self.needs:
                on = {owner.get(d, 0) for d in self.needs[op]}
                owner[op] = 0 if on <= {0} else -1
        del owner[current]
        return owner

    def _slow(self) -> None:
        """An op is taking long: numba is compiling. Share out the ops not started; say so."""
        ops = list(self.calls)
        with self._lock:
            if self.compiling:
                return
            self.compiling = True
            pending = ops[self._next - 1 :]
            rest = ops[self._next :]
            n = min(self.cores - 1, len([o for o in rest if o not in self.needs]))
            if self.helper is not None and n > 0:
                plan = self.plan(ops[self._next - 1], rest, n)
                for k in range(1, n + 1):
                    share = [op for op in rest if plan[op] == k]
                    proc = self.helper(share) if share else None
                    if proc is None:
                        continue
                    self._helpers.append(proc)
                    for op in share:
                        self.handed_off[op] = len(self._helpers)
                if self._helpers:
                    self._after = [op for op in rest if plan[op] == -1]
        if self.notice is not None:
            self.notice(pending, len(self._helpers))

    def _call(self, op: str) -> None:
        t0 = time.perf_counter()
        try:
            self.calls[op]()
        except Exception as exc:  # the real call reports it, in its own case
            self.errors[op] = f"{type(exc).__name__}: {exc}"
        self.seconds[op] = self.seconds.get(op, 0.0) + time.perf_counter() - t0

    def _run(self) -> None:
        try:
            ops = list(self.calls)
            while True:
                with self._lock:
                    skip = set(self.handed_off) | set(self._after)
                    while self._next < len(ops) and ops[self._next] in skip:
                        self._next += 1
                    if self._next == len(ops):
                        break
                    op = ops[self._next]
                    self._next += 1
                timer = threading.Timer(self.notice_after_s, self._slow)
                timer.daemon = True
                timer.start()
                try:
                    self._call(op)
                finally:
                    timer.cancel()
            for k, proc in enumerate(self._helpers, 1):
                proc.wait()
                for op in ops:
                    if self.handed_off.get(op) == k:
                        self._call(op)  # loads what the helper cached (compiles if it failed)
            for op in self._after:
                self._call(op)
        finally:
            self.wall_s = time.perf_counter() - self._t0
            self._done.set()

    def start(self) -> NumbaWarmup:
        self._t0 = time.perf_counter()
        if not self.calls:
            self._done.set()
            return self
        self._thread = threading.Thread(target=self._run, name="fastconv-numba-jit", daemon=True)
        self._thread.start()
        return self

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self) -> float:
        """Block until every kernel is ready; returns the seconds from start to then."""
        self._done.wait()
        return self.wall_s
