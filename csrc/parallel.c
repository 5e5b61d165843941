/* parallel.c: fastconv's thread pool, which runs every multi-threaded loop of conv2d.c,
 * conv_transpose2d.c, depthwise_conv2d.c and pool2d.c.
 *
 *   fc_parallel_for  run fn over [0, n) in chunks on up to `team` threads, the caller included
 *   fc_team_for      how many threads a call of a given cost should use (the grain size)
 *   fc_chunk_for     how many loop indices one chunk should hold (the split)
 *   fc_last_team     threads that took part in this OS thread's last fc_parallel_for
 *   fc_pool_workers  worker threads started so far (the caller is not one)
 *   fc_pool_straggle_ns  the recent time lost to other programs (see fc_team_for)
 *   fc_pool_set_spin how long idle workers and a waiting caller spin before they sleep
 *   fc_pool_forget_losses  forget the time lost so far (a benchmark, before each sample)
 *   fc_pool_set_straggle   as if that much time had just been lost (tests)
 *
 * Why not OpenMP (which these files used before; capsule.c and probe.c still do):
 *  - An OpenMP parallel region ends with a barrier at which the caller waits for every thread
 *    of the team, including one the OS has not run yet. With one core of two busy with another
 *    program, the woken worker often waits a scheduler slice or more for a core, and every
 *    call paid it: 1-thread calls of 0.5 ms took 7-20 ms with 2 threads (bench/contention.py,
 *    bench/RESULTS.md). Here the caller takes chunks itself and returns as soon as every
 *    chunk is done: a worker that wakes late finds no chunk left and takes no part, so the
 *    caller never waits for a thread that has not started; it waits only for a chunk a
 *    worker is running, and chunks are small (fc_chunk_for).
 *  - libgomp's workers spin up to 300000 iterations after each region (GOMP_SPINCOUNT, read
 *    once, when libgomp initialises); on a busy core the spinning thread competes with the
 *    thread that has work. Here the spin is short and fastconv's own (fc_pool_set_spin).
 *  - The process may hold another libgomp: torch ships one under the same soname, and when
 *    torch is imported first the extension's OpenMP calls bind to that copy, whose settings
 *    and state fastconv does not control. This pool depends on nothing but pthreads.
 *
 * Protocol. A job is one fc_parallel_for: a descriptor (fn, ctx, n, chunk, nchunks, team) in
 * static storage and a 64-bit claim word, generation << 32 | next chunk. The caller writes the
 * descriptor, then publishes a new generation with next chunk 0, wakes sleeping workers (a
 * condition variable, only if some sleep) and claims chunks itself. Worker w (1, 2, ...) joins
 * a job only if w < team. A chunk is claimed by a compare-and-swap of the claim word that
 * checks the generation, so a late worker can never take a chunk of a finished job; a
 * successful claim also proves the descriptor it read belongs to that generation (the caller
 * rewrites it only after every chunk of the job is done). The caller then waits until the
 * count of finished chunks reaches nchunks: a short spin, then the condition variable.
 * Only one job runs at a time: a call made while another OS thread's job is running (or from
 * inside fn) runs on its own thread alone. After fork() the child starts with an empty pool.
 *
 * Grain size and lost time (fc_team_for). A call gets one thread per FC_GRAIN_*_NS of
 * estimated work (the kernels estimate it, fc_cost_mem / fc_cost_macs in common.h): 100 us
 * when the workers sleep (waking one takes tens of microseconds), 10 us when one still spins
 * after the previous call. The caller never waits for a worker that has not started, but it
 * loses time in two other ways when other programs want the cores:
 *  - it waits for a chunk a worker was running when the OS took the worker's core: a
 *    scheduler slice or more (1-10 ms measured), whatever the chunk size;
 *  - it is itself off its core while it runs its chunks (another program, or the OS put it
 *    on the same core as a worker).
 * After each call the caller measures both (the wait beyond twice one of its own chunks;
 * its wall time minus its CPU time) and keeps the largest recent loss, halved every second.
 * A loss counts only when it exceeds FC_LOSS_MIN_NS and a quarter of its call's time (a
 * millisecond taken from a 20 ms call costs it little, and says little about short calls),
 * and two more came within that second (one page-fault storm, kernel thread or a vCPU the
 * hypervisor took for a few ms is not a busy machine: with two, 2-thread timings on the
 * quiet KVM guest of bench/RESULTS.md fell back to one thread for seconds now and then; a
 * busy core gives a loss every few calls). A call shorter than
 * FC_STRAGGLE_FACTOR (4) times the recent loss runs alone, so that a loss costs such a call
 * at most 1/4 of its time (the contention bar: at most 1.25x the 1-thread time), and idle
 * workers sleep instead of spinning; now and then one such call shares anyway, a probe
 * (FC_PROBE_MIN_NS below). On a quiet machine no loss is seen and calls are shared; after
 * the other program stops, they are shared again a few probes later.
 *
 * Co-location. The OS may wake a worker on the caller's own core: it does so when the other
 * cores look busy, and in a virtual machine when they are idle, because an idle virtual CPU
 * is halted and looks preempted to the guest's scheduler (measured on the 2-vCPU KVM guest
 * of bench/RESULTS.md: after 50 ms idle, nearly every wake-up). Two threads on one core only
 * take turns, so a worker that finds itself on the caller's core yields it back (and does not
 * spin there after the job); it joins in once the OS has moved it to a core of its own,
 * which takes a few milliseconds: long calls still get the second core, short ones run at
 * the 1-thread speed. bench/contention.py measures all of this; the figures and the
 * alternatives tried are in bench/RESULTS.md.
 *
 * Build: compiled with the other C files of csrc/ (`python csrc/build_ffi.py`); without
 * pthreads (_WIN32) every call runs on the caller alone. Test: `pytest tests/test_threads.py`.
 */
#define _GNU_SOURCE /* pthread_sigmask, clock_gettime, sched_getcpu under -std=c11 */

#include <stdint.h>
#include <stdlib.h>

#include "common.h"

/* Time one thread should have before another is worth waking (estimated ns of work per
 * thread). A sleeping worker needs tens of microseconds to start (a futex wake, then the
 * scheduler); one still spinning after the previous job joins within a microsecond. */
#define FC_GRAIN_SLEEPING_NS 100000
#define FC_GRAIN_SPINNING_NS 10000
/* Work per chunk (estimated ns): bounds what the caller can wait for at the end of a call. */
#define FC_CHUNK_NS 25000
/* Default spins, ns: workers after a job (catches back-to-back calls), the caller for the
 * last chunks (before it sleeps and frees its core for a worker the OS has preempted). */
#define FC_WORKER_SPIN_NS 100000
#define FC_CALLER_SPIN_NS 20000
/* About what waking a sleeping worker costs (ns). */
#define FC_WAKE_NS 50000
/* Smallest loss that counts (ns): other programs take a core for a scheduler slice (ms);
 * shorter losses are the pool's own (a worker woken on the caller's core preempts it for
 * 20-200 us before it moves away). */
#define FC_LOSS_MIN_NS 250000
/* Lost time: a call shares its work only if it is FC_STRAGGLE_FACTOR times longer than the
 * recent loss, which halves every FC_STRAGGLE_HALF_LIFE_NS (with 100 ms, losses came back
 * every few calls under a steady load: 1.5-2.5x on 1-3 ms calls). */
#define FC_STRAGGLE_FACTOR 4
#define FC_STRAGGLE_HALF_LIFE_NS 1000000000
/* Probes: while the recent loss keeps a call alone, one such call per probe gap is shared
 * anyway, to see whether the loss is still there. A probe that loses nothing halves the
 * recent loss and brings the gap back to its least; a probe that loses doubles the gap, up
 * to its most. Without probes one burst of stalls on a quiet guest (three vCPU stalls of
 * 1-4 ms within a second, every few seconds on the KVM guest of bench/RESULTS.md) kept
 * 0.3-1 ms calls alone for 1-4 s, loops of them at the 1-thread speed; with them the loss
 * is gone a few gaps later. On a busy machine probes lose time, and soon come only every
 * FC_PROBE_MAX_NS (the contention bar holds: bench/contention.py). */
#define FC_PROBE_MIN_NS 50000000
#define FC_PROBE_MAX_NS 2000000000

static _Thread_local int fc_last = 1;

int fc_last_team(void) { return fc_last; }

/* The recent loss, ns: the largest time a recent call lost to other programs (a worker or
 * the caller off its core, see fc_parallel_for), halved every FC_STRAGGLE_HALF_LIFE_NS. On
 * a quiet machine it stays 0. */
static _Atomic int64_t fc_straggle, fc_straggle_at;
static _Atomic int64_t fc_loss_at = INT64_MIN / 2; /* when the last loss that counts was seen */
static _Atomic int64_t fc_loss_at_2 = INT64_MIN / 2; /* and the one before it */
static _Atomic int64_t fc_probe_at;                  /* when the last probe was let share */
static _Atomic int64_t fc_probe_gap = FC_PROBE_MIN_NS;
static _Thread_local int fc_probing;                 /* this thread's next job is a probe */

static int64_t fc_straggle_decayed(int64_t now) {
    const int64_t s = fc_straggle, age = now - fc_straggle_at;
    const int64_t halvings = age > 0 ? age / FC_STRAGGLE_HALF_LIFE_NS : 0;
    return halvings >= 62 ? 0 : s >> halvings;
}

#if defined(_WIN32)

int fc_team_for(int64_t cost_ns, int threads) { (void)cost_ns; (void)threads; return 1; }
int64_t fc_chunk_for(int64_t n, int64_t cost_ns, int team) { (void)cost_ns; (void)team; return n; }
int fc_parallel_for(int64_t n, int64_t chunk, int team, fc_range_fn fn, void *ctx) {
    (void)chunk; (void)team;
    if (n > 0) fn(ctx, 0, n, 0);
    return fc_last = 1;
}
void fc_pool_set_spin(int64_t worker_ns, int64_t caller_ns) { (void)worker_ns; (void)caller_ns; }
int fc_pool_workers(void) { return 0; }
int64_t fc_pool_straggle_ns(void) { return 0; }
void fc_pool_forget_losses(void) {}
void fc_pool_set_straggle(int64_t ns) { (void)ns; }

#else

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#define FC_POOL_MAX (FC_POOL_SLOTS - 1) /* workers at most (threads are capped at the CPUs) */

static inline void fc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t fc_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The core the calling thread runs on (-1: unknown). */
static inline int fc_core(void) {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}

/* Ask the OS to run the calling thread on a core other than `core`: allowed everywhere but
 * there, it is moved at once; then allowed everywhere again (it stays where it now is). Where
 * that cannot be done, it only yields the core. */
static void fc_move_off(int core) {
#if defined(__linux__)
    cpu_set_t all, others;
    if (core >= 0 && core < CPU_SETSIZE && !sched_getaffinity(0, sizeof all, &all)) {
        others = all;
        CPU_CLR(core, &others);
        if (CPU_COUNT(&others) > 0 && !sched_setaffinity(0, sizeof others, &others)) {
            sched_setaffinity(0, sizeof all, &all);
            return;
        }
    }
#endif
    sched_yield();
}

/* CPU time of the calling thread (a system call, about 0.2 us): with fc_now_ns, how long the
 * thread was off its core. */
static inline int64_t fc_cpu_ns(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)) return 0;
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- pool state; the descriptor fields are atomics because a late worker may read them
 * while the caller of the next job writes them (it then fails its claim) ---- */
static pthread_mutex_t fc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fc_wake_cv = PTHREAD_COND_INITIALIZER; /* workers sleep here */
static pthread_cond_t fc_done_cv = PTHREAD_COND_INITIALIZER; /* the caller sleeps here */
static int fc_nworkers;                                       /* started; under fc_mu */
static _Atomic int fc_busy;          /* a job is running */
static _Atomic uint64_t fc_claim;    /* generation << 32 | next chunk */
static _Atomic int64_t fc_done;      /* chunks finished in the current job */
static _Atomic int fc_sleepers;      /* workers waiting on fc_wake_cv */
static _Atomic int fc_spinners;      /* workers spinning for the next job */
static _Atomic int fc_caller_sleeps; /* the caller waits on fc_done_cv */
static _Atomic uint64_t fc_used;     /* bit s: slot s ran a chunk of the current job */
static _Atomic int fc_caller_core = -1; /* where the current (or last) job's caller runs */
static _Atomic int64_t fc_worker_spin = FC_WORKER_SPIN_NS, fc_caller_spin = FC_CALLER_SPIN_NS;
static _Atomic(fc_range_fn) fc_job_fn;
static _Atomic(void *) fc_job_ctx;
static _Atomic int64_t fc_job_n, fc_job_chunk, fc_job_nchunks;
static _Atomic int fc_job_team;

void fc_pool_set_spin(int64_t worker_ns, int64_t caller_ns) {
    if (worker_ns >= 0) fc_worker_spin = worker_ns;
    if (caller_ns >= 0) fc_caller_spin = caller_ns;
}

int fc_pool_workers(void) {
    pthread_mutex_lock(&fc_mu);
    int n = fc_nworkers;
    pthread_mutex_unlock(&fc_mu);
    return n;
}

int64_t fc_pool_straggle_ns(void) { return fc_straggle_decayed(fc_now_ns()); }

void fc_pool_set_straggle(int64_t ns) {
    fc_straggle = ns > 0 ? ns : 0;
    fc_straggle_at = fc_now_ns();
}

/* Back to a quiet machine's state: no recent loss. `fastconv bench` calls it before each
 * sample, which it times as if alone on the machine: else a few stalls of the guest (a
 * vCPU held by the host for 2 ms, three times in a second) made the 1-3 ms calls of the
 * next seconds run alone, and the samples measured the 1-thread speed. */
void fc_pool_forget_losses(void) {
    fc_straggle = 0;
    fc_straggle_at = 0;
    fc_loss_at = fc_loss_at_2 = INT64_MIN / 2;
    fc_probe_gap = FC_PROBE_MIN_NS;
    fc_probing = 0;
}

int fc_team_for(int64_t cost_ns, int threads) {
    if (threads <= 1 || cost_ns <= 0) return 1;
    /* workers spinning for work start at once; sleeping ones must be woken first */
    int64_t grain = fc_spinners > 0 ? FC_GRAIN_SPINNING_NS : FC_GRAIN_SLEEPING_NS;
    int64_t t = cost_ns / grain;
    const int team = t < 1 ? 1 : t < threads ? (int)t : threads;
    /* a call that a straggler could slow down by more than 1 / FC_STRAGGLE_FACTOR runs
     * alone, but for a probe now and then (FC_PROBE_MIN_NS); only a call that would share
     * may be one (a small call taking the probe's turn would leave the others alone) */
    if (team > 1 && fc_straggle > 0) {
        const int64_t now = fc_now_ns();
        if (cost_ns < FC_STRAGGLE_FACTOR * fc_straggle_decayed(now)) {
            if (now - fc_probe_at < fc_probe_gap) return 1;
            fc_probe_at = now;
            fc_probing = 1;
        }
    }
    return team;
}

int64_t fc_chunk_for(int64_t n, int64_t cost_ns, int team) {
    if (team <= 1 || n <= 1) return n > 1 ? n : 1;
    /* about FC_CHUNK_NS of work, and at least 4 chunks per thread for the balance */
    int64_t c = cost_ns > 0 ? (int64_t)((double)n * FC_CHUNK_NS / (double)cost_ns) : 1;
    int64_t most = ceil_div(n, 4 * (int64_t)team);
    if (c > most) c = most;
    return c < 1 ? 1 : c;
}

/* Claim and run chunks of job `gen` as `slot` until none is left or the job has changed;
 * returns how many it ran. */
static int64_t fc_run_chunks(uint32_t gen, int slot) {
    int64_t ran = 0;
    for (;; ran++) {
        uint64_t c = __atomic_load_n(&fc_claim, __ATOMIC_ACQUIRE);
        if ((uint32_t)(c >> 32) != gen) return ran;
        const int64_t nchunks = __atomic_load_n(&fc_job_nchunks, __ATOMIC_ACQUIRE);
        const int64_t i = (int64_t)(uint32_t)c;
        if (i >= nchunks) return ran;
        const fc_range_fn fn = __atomic_load_n(&fc_job_fn, __ATOMIC_ACQUIRE);
        void *ctx = __atomic_load_n(&fc_job_ctx, __ATOMIC_ACQUIRE);
        const int64_t n = __atomic_load_n(&fc_job_n, __ATOMIC_ACQUIRE);
        const int64_t chunk = __atomic_load_n(&fc_job_chunk, __ATOMIC_ACQUIRE);
        if (slot >= __atomic_load_n(&fc_job_team, __ATOMIC_ACQUIRE)) return ran;
        /* A worker the OS woke on the caller's core (it does that when the other cores look
         * busy, or idle but halted, as in a virtual machine) could only take turns with the
         * caller there, and it has just preempted it: it moves to another core and joins in
         * from there (or finds the job done by then). */
        const int core = fc_core();
        if (slot == 0) {
            fc_caller_core = core;
        } else if (core >= 0 && core == fc_caller_core) {
            fc_move_off(core);
            ran--;
            continue;
        }
        if (!__atomic_compare_exchange_n(&fc_claim, &c, c + 1, 0, __ATOMIC_SEQ_CST,
                                         __ATOMIC_RELAXED)) {
            ran--;
            continue;
        }
        /* chunk i of job gen is ours, and the fields above are that job's */
        if (!ran) __atomic_fetch_or(&fc_used, (uint64_t)1 << slot, __ATOMIC_RELAXED);
        const int64_t lo = i * chunk, hi = lo + chunk < n ? lo + chunk : n;
        fn(ctx, lo, hi, slot);
        if (__atomic_add_fetch(&fc_done, 1, __ATOMIC_SEQ_CST) == nchunks &&
            __atomic_load_n(&fc_caller_sleeps, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&fc_mu);
            pthread_cond_signal(&fc_done_cv);
            pthread_mutex_unlock(&fc_mu);
        }
    }
}

/* The generation current when each worker was started: its first job is the next one. */
static uint32_t fc_start_gen[FC_POOL_MAX + 1];

static void *fc_worker(void *arg) {
    const int slot = (int)(intptr_t)arg;
    uint32_t seen = fc_start_gen[slot];
    for (;;) {
        /* wait for a new job: spin a while (cheap for back-to-back calls), then sleep */
        uint32_t gen = (uint32_t)(__atomic_load_n(&fc_claim, __ATOMIC_ACQUIRE) >> 32);
        if (gen == seen) {
            __atomic_add_fetch(&fc_spinners, 1, __ATOMIC_SEQ_CST);
            /* on a busy machine (more time lost to other programs than a wake-up costs), or on
             * the caller's core, a spinning worker only takes a core from someone: sleep */
            const int64_t now = fc_now_ns();
            const int busy = fc_straggle_decayed(now) > FC_WAKE_NS || fc_core() == fc_caller_core;
            const int64_t until = now + (busy ? 0 : fc_worker_spin);
            for (int k = 1;; k++) {
                fc_cpu_relax();
                gen = (uint32_t)(__atomic_load_n(&fc_claim, __ATOMIC_ACQUIRE) >> 32);
                if (gen != seen || (k % 64 == 0 && fc_now_ns() >= until)) break;
            }
            __atomic_sub_fetch(&fc_spinners, 1, __ATOMIC_SEQ_CST);
        }
        if (gen == seen) {
            pthread_mutex_lock(&fc_mu);
            __atomic_add_fetch(&fc_sleepers, 1, __ATOMIC_SEQ_CST);
            while ((gen = (uint32_t)(__atomic_load_n(&fc_claim, __ATOMIC_SEQ_CST) >> 32)) == seen)
                pthread_cond_wait(&fc_wake_cv, &fc_mu);
            __atomic_sub_fetch(&fc_sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&fc_mu);
        }
        seen = gen;
        fc_run_chunks(gen, slot);
    }
    return NULL;
}

/* Start workers until there are `want`; returns how many there are. Called by the owner of
 * the pool (fc_busy) before it publishes its job, which the new workers then take part in.
 * Workers block every signal: signals go to the threads the program made. */
static int fc_grow(int want) {
    if (want > FC_POOL_MAX) want = FC_POOL_MAX;
    pthread_mutex_lock(&fc_mu);
    if (fc_nworkers < want) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        const uint32_t gen = (uint32_t)(__atomic_load_n(&fc_claim, __ATOMIC_RELAXED) >> 32);
        while (fc_nworkers < want) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            fc_start_gen[fc_nworkers + 1] = gen;
            int rc = pthread_create(&t, &attr, fc_worker, (void *)(intptr_t)(fc_nworkers + 1));
            pthread_attr_destroy(&attr);
            if (rc) break;
            fc_nworkers++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    int n = fc_nworkers;
    pthread_mutex_unlock(&fc_mu);
    return n;
}

/* In the child of fork() only the forking thread exists: forget the workers and any job. */
static void fc_after_fork_child(void) {
    pthread_mutex_init(&fc_mu, NULL);
    pthread_cond_init(&fc_wake_cv, NULL);
    pthread_cond_init(&fc_done_cv, NULL);
    fc_nworkers = 0;
    fc_busy = 0;
    fc_sleepers = 0;
    fc_spinners = 0;
    fc_caller_sleeps = 0;
}

static pthread_once_t fc_once = PTHREAD_ONCE_INIT;
static void fc_pool_init(void) { pthread_atfork(NULL, NULL, fc_after_fork_child); }

int fc_parallel_for(int64_t n, int64_t chunk, int team, fc_range_fn fn, void *ctx) {
    if (n <= 0) return fc_last = 1;
    if (chunk < 1) chunk = 1;
    const int64_t nchunks = ceil_div(n, chunk);
    if (team > nchunks) team = (int)nchunks;
    if (team > FC_POOL_MAX + 1) team = FC_POOL_MAX + 1;
    int expected = 0;
    if (team <= 1 || nchunks >= ((int64_t)1 << 32) ||
        !__atomic_compare_exchange_n(&fc_busy, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        fn(ctx, 0, n, 0); /* one thread: the whole range at once */
        return fc_last = 1;
    }
    /* the first shared job after fc_team_for let a probe share (a one-thread job between
     * them, such as a small stage of the same call, leaves the probe for this one) */
    const int probe = fc_probing;
    fc_probing = 0;
    pthread_once(&fc_once, fc_pool_init);
    const int workers = fc_grow(team - 1);
    if (team > workers + 1) team = workers + 1;

    /* the descriptor, then the generation that makes it visible */
    fc_caller_core = fc_core();
    __atomic_store_n(&fc_job_fn, fn, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_ctx, ctx, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_n, n, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_chunk, chunk, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_nchunks, nchunks, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_job_team, team, __ATOMIC_RELEASE);
    __atomic_store_n(&fc_done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fc_used, 0, __ATOMIC_RELAXED);
    const uint32_t gen = (uint32_t)(__atomic_load_n(&fc_claim, __ATOMIC_RELAXED) >> 32) + 1;
    __atomic_store_n(&fc_claim, (uint64_t)gen << 32, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&fc_sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&fc_mu);
        pthread_cond_broadcast(&fc_wake_cv);
        pthread_mutex_unlock(&fc_mu);
    }

    const int64_t t0 = fc_now_ns(), c0 = fc_cpu_ns(), mine = fc_run_chunks(gen, 0);
    const int64_t t1 = fc_now_ns(), c1 = fc_cpu_ns();

    /* the last chunks run on workers: spin briefly, then sleep and leave the core free */
    if (__atomic_load_n(&fc_done, __ATOMIC_SEQ_CST) != nchunks) {
        const int64_t until = fc_now_ns() + fc_caller_spin;
        for (int k = 1; __atomic_load_n(&fc_done, __ATOMIC_ACQUIRE) != nchunks; k++) {
            fc_cpu_relax();
            if (k % 64 == 0 && fc_now_ns() >= until) break;
        }
    }
    if (__atomic_load_n(&fc_done, __ATOMIC_SEQ_CST) != nchunks) {
        pthread_mutex_lock(&fc_mu);
        __atomic_store_n(&fc_caller_sleeps, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&fc_done, __ATOMIC_SEQ_CST) != nchunks)
            pthread_cond_wait(&fc_done_cv, &fc_mu);
        __atomic_store_n(&fc_caller_sleeps, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&fc_mu);
    }
    /* Time lost to other programs: waiting for a worker's last chunk takes at most about one
     * chunk (as long as one of the caller's own), so a longer wait means the worker was off
     * its core; and the caller itself was off its core for (t1 - t0) - (c1 - c0) while it
     * ran its chunks (another program, or a worker the OS put on the caller's core). */
    const int64_t t2 = fc_now_ns(), excess = mine ? (t2 - t1) - 2 * (t1 - t0) / mine : 0;
    const int64_t off = (t1 - t0) - (c1 - c0), lost = excess > off ? excess : off;
    /* A loss counts when it is a large share of the call, and two more were seen within the
     * half-life before it (one page-fault storm or kernel thread is not a busy machine). */
    if (lost > FC_LOSS_MIN_NS && FC_STRAGGLE_FACTOR * lost > t2 - t0) {
        const int64_t prev = fc_loss_at_2;
        fc_loss_at_2 = fc_loss_at;
        fc_loss_at = t2;
        if (t2 - prev < FC_STRAGGLE_HALF_LIFE_NS) {
            const int64_t recent = fc_straggle_decayed(t2);
            fc_straggle = lost > recent ? lost : recent;
            fc_straggle_at = t2;
        }
    }
    fc_last = __builtin_popcountll(__atomic_load_n(&fc_used, __ATOMIC_RELAXED));
    if (probe) { /* shared although the recent loss said alone: was anything lost? */
        const int lossy = lost > FC_LOSS_MIN_NS && FC_STRAGGLE_FACTOR * lost > t2 - t0;
        if (!lossy) {
            fc_straggle = fc_straggle_decayed(t2) / 2;
            fc_straggle_at = t2;
            fc_probe_gap = FC_PROBE_MIN_NS;
        } else if (fc_probe_gap < FC_PROBE_MAX_NS) {
            fc_probe_gap = 2 * fc_probe_gap;
        }
    }
    __atomic_store_n(&fc_busy, 0, __ATOMIC_RELEASE);
    return fc_last;
}

#endif /* _WIN32 */
