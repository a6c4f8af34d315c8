/* kernel/park.pml -- SPIN model of the worker park/unpark protocol:
 * kernel/idle.h (Idle), kernel/parker.h (Parker), port/linux/port.cpp
 * (futex_wait / futex_wake) and the scheduler.cpp code around them
 * (worker_main, next_task, steal_work, run_with_lifo/leave_searching, park,
 * notify_parked, notify_parked_local, remote_push, runtime_free's unparks).
 *
 * WHAT IT MODELS
 *   NW workers (default 3, so one can be refused searching while another
 *   searches) run worker_main. A remote thread pushes a PARENT task and
 *   NPLAIN plain tasks onto the inject queue, each followed by
 *   notify_parked (remote_push). The worker that runs PARENT pushes a CHILD
 *   onto its own local queue (schedule_local: push_back, then
 *   notify_parked_local) and then stays inside that poll until CHILD has run
 *   (a task that busy-waits on a sibling, as in
 *   Cpp.ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft): the child can
 *   only run if another worker steals it, so a missed wake-up there hangs.
 *   When every task has run, main() does runtime_free's steps 2 and 3 (raise
 *   shutdown, unpark every worker, join them).
 *
 *   Step by step as in the C++: every RMW or load of Idle::state_, every
 *   access to the Parker word, each locked region of Idle (mu_ as a lock
 *   bit; what is done under it is one step per shared access), the futex
 *   check-and-sleep (one atomic step, as in the kernel), futex_wake. The
 *   queues are abstracted: a local queue is a channel whose push, pop and
 *   steal are single atomic steps (the lock-free protocol inside them is
 *   checked by local_queue.pml; tasks a thief has claimed but not yet
 *   published belong to a thread that is awake and will run one of them and
 *   then, as last searcher, notify, since the rest sit in its own queue,
 *   which work_pending sees); the inject queue is under a mutex in
 *   C++ and a channel here. spin_search's extra looks and random victim
 *   order are left out (fewer looks can only make a lost wake-up likelier).
 *   Futex waits never wake spuriously here (the worst case for wake-ups),
 *   and the LIFO slot and fork stack, which are not stealable by design
 *   (scheduler.h), are not modelled.
 *
 * LOCKS
 *   A critical section of Idle::mu_ is cut into one step per access to
 *   something other threads read without the lock (state_); the lock's
 *   acquisition and the accesses to sleepers_/n_sleepers_ (read and written
 *   only under mu_) are folded into the neighbouring step (Lipton's
 *   reduction: an acquire moves right, a release left, and accesses that
 *   need the lock are invisible to everyone else). A section with no state_
 *   access (is_parked) is one step.
 *
 * MEMORY MODEL
 *   Promela interleaves steps: sequentially consistent. The C++ is not SC
 *   everywhere, and the model is valid because of where the C++ puts its
 *   seq_cst operations. The property that needs more than acquire/release is
 *   the store-buffering pattern of a lost wake-up: a pusher does "publish
 *   task; read idle state" and a parking worker does "write idle state
 *   (to_parked); read every queue". Without full barriers both reads could
 *   miss the other's write (each store still in a store buffer / not yet
 *   propagated on Arm and POWER), which SC interleaving cannot produce.
 *     - local pusher (notify_parked_local): push (release store of tail);
 *       seq_cst fence; relaxed load of state_. A yield queued behind other
 *       tasks does the fence and load later, before its worker's next poll
 *       (announce_pushes; the fence is then the local pop's CAS where there
 *       is one): the steps in between are the owner's own scheduler steps,
 *       none of which blocks, so the model's push-then-notify covers it.
 *     - parker (park): to_parked = seq_cst fetch_sub on state_; seq_cst
 *       fence; work_pending's acquire loads of the queues.
 *     By [atomics.fences] the two fences are ordered in the single total
 *     order S: if the parker's fence is first, the pusher's load of state_
 *     sees to_parked's write (or a later one); if the pusher's is first,
 *     the parker's queue loads see the push. So one of the two reads sees
 *     the other's write, exactly as in an SC interleaving.
 *     - remote pusher (remote_push): push under the inject mutex, then
 *       should_notify = seq_cst fetch_add(0) on state_. RMWs on one atomic
 *       are totally ordered: if to_parked's is first, the pusher's RMW reads
 *       its effect; if the pusher's is first, to_parked reads from it
 *       (acq_rel), so the push happens-before the parker's check.
 *     - Everything else is on one location (coherence: every thread sees the
 *       RMWs on state_ and the Parker word in one order), under Idle::mu_, or
 *       release/acquire message passing, all of which SC models exactly.
 *   The mutations -DMUT_NO_PUSH_FENCE and -DMUT_NO_PARK_FENCE show what the
 *   fences prevent: they model the reordering a missing fence allows (the
 *   later load performed before the earlier write is visible), and SPIN then
 *   finds the lost wake-up.
 *
 * MAPPING (model -> C++)
 *   nsearch, nunpark   Idle::state_ (low 16 bits searching, high 16 unparked);
 *                      changed together in one step, as the packed RMW does
 *   mu                 Idle::mu_; sleepers[], nsleep: Idle::sleepers_, n_sleepers_
 *   parker[w]          workers[w].parker.state_ (EMPTY 0, PARKED 1, NOTIFIED 2)
 *   fwait[w]           the worker sleeps in FUTEX_WAIT on parker[w]
 *   lq[w], inj         workers[w].queue, Shared::inject
 *   searching (local)  Worker::searching
 *   shutdown           Shared::shutdown
 *
 * PROPERTIES AND HOW THEY ARE CHECKED
 *   - no lost wake-up and no deadlock: any state in which every process is
 *     blocked (e.g. all workers asleep in FUTEX_WAIT, or one stuck in PARENT's
 *     poll and the others asleep, while a task sits in a queue) is an
 *     invalid end state: the safety run (pan without -E) reports it;
 *   - at shutdown every queue is empty (assertions in main and at each
 *     worker's exit, where drain_worker would drop leftovers);
 *   - the counters stay in range: nsearch <= nunpark <= NW (asserted at each
 *     update), a worker is never listed twice among the sleepers;
 *   - termination: LTL `terminates` (<> every worker exited), under weak
 *     fairness (pan -a -f): no worker loops for ever (e.g. waking each other
 *     without progress).
 *
 * COMMAND (tests/check_models.sh runs these; -DCOLLAPSE is lossless)
 *   spin [-D...] -a kernel/park.pml
 *   cc -O2 -DSAFETY -DNOCLAIM -DCOLLAPSE -DMEMLIM=3000 -o pan pan.c
 *   ./pan -m1000000                                      (safety)
 *   cc -O2 -DCOLLAPSE -DMEMLIM=3000 -DNFAIR=3 -o pan pan.c
 *   ./pan -a -f -m1000000                                (liveness)
 *   Knobs: -DNW (workers, 3), -DNPLAIN (plain remote tasks, 1),
 *   -DSTART_PARKED (start from an idle runtime: every worker already
 *   parked; otherwise all start running, as after runtime_new).
 *
 * RESULTS (spin 6.5.2, 2 cores shared with other builds; errors: 0 in all)
 *   safety,   NW=2, 2 plain, all start running:      1,415,098 states,  8 s
 *   safety,   NW=3, 0 plain, START_PARKED:           6,200,656 states, 19 s
 *   liveness, NW=2, 2 plain, all start running:      1,414,055 states, 23 s
 *   (NW=3 with every worker starting unparked exceeds 60 million states and
 *   3 GB, so it is not run; NW=3 liveness from START_PARKED passes too, in
 *   about 150 s, too slow for CI.) No lost wake-up or deadlock found.
 *
 * MUTATIONS (tests/check_models.sh --mutations; each must fail)
 *   -DMUT_NO_RECHECK       park() does not recheck the queues after to_parked
 *   -DMUT_RECHECK_IF_SEARCHING  only a worker that was searching rechecks
 *                          (Tokio's rule; weft's comment says it hung)
 *   -DMUT_NO_PUSH_FENCE    notify_parked_local reads state_ before its push
 *                          is visible (the fence removed)
 *   -DMUT_NO_PARK_FENCE    park()'s queue check reads before to_parked is
 *                          visible (the fence removed)
 *   -DMUT_NO_LAST_SEARCHER the last searcher to find work does not notify
 *                          (even when work is still queued)
 *   -DMUT_PARKER_NO_NOTIFIED_STATE  unpark() only wakes a thread that is
 *                          already PARKED (an early unpark is forgotten)
 * Results: all but one caught as an invalid end state (every worker asleep
 * or stuck in PARENT's poll with CHILD queued), with NW=2 in 1-5 s:
 *   NO_RECHECK, NO_PUSH_FENCE, NO_PARK_FENCE, PARKER_NO_NOTIFIED_STATE;
 *   RECHECK_IF_SEARCHING reproduces the hang the comment in park() names:
 *     W1 (searching) takes PARENT from the inject queue; W0 runs the plain
 *     tasks, then to_searching() is refused (W1 still counts as searching);
 *     W1 leaves searching (last searcher: notify_parked finds nobody
 *     parked), runs PARENT, pushes CHILD and reads the idle word: nobody
 *     searching, nobody parked, so no wake; W0 then parks without
 *     rechecking because it was not searching. CHILD waits for ever behind
 *     PARENT's poll. (Caught with NW=2; with NW=3 from START_PARKED it is
 *     not reachable.)
 *   NO_LAST_SEARCHER survives: since every parking worker rechecks the
 *   queues, the last searcher's notify is not needed to avoid a lost
 *   wake-up (it is there for parallelism: waking a helper sooner).
 */

#ifndef NW
#define NW 3
#endif
#ifndef NPLAIN
#define NPLAIN 1
#endif
#define TOTAL (NPLAIN + 2)      /* PARENT, CHILD and the plain ones */

#define NONE 255
#define EMPTY 0
#define PARKED 1
#define NOTIFIED 2

#define PLAIN 1
#define PARENT 2
#define CHILD 3

byte nsearch, nunpark;
bit mu;
byte sleepers[NW];
byte nsleep;
byte parker[NW];
bit fwait[NW];
chan lq[NW] = [4] of { byte };
chan inj = [TOTAL] of { byte };
bit shutdown;
byte done;
bit child_done;
byte exited;

/* after worker_to_notify's first critical step: still holding mu */
#define mu_held_ok(ok) (ok && nsleep > 0)

/* Idle::should_wake / should_notify: fetch_add(0, seq_cst) */
inline should_wake(r) {
    atomic { r = (nsearch == 0 && nunpark < NW) }
}

/* Idle::worker_to_notify. Critical sections: see "LOCKS" above. */
inline worker_to_notify(r) {
    should_wake(ok);
    r = NONE;
    if
    :: ok ->
       atomic {
           mu == 0 -> mu = 1;                   /* lock */
           ok = (nsearch == 0 && nunpark < NW); /* should_wake */
           if
           :: !ok || nsleep == 0 -> mu = 0      /* unlock, return -1 */
           :: else -> skip
           fi
       };
       if
       :: mu_held_ok(ok) ->
          atomic {
              nunpark++; nsearch++;             /* fetch_add(UNPARK_ONE | 1) */
              assert(nsearch <= nunpark && nunpark <= NW);
              nsleep--; r = sleepers[nsleep]; sleepers[nsleep] = 0;
              mu = 0                            /* unlock */
          }
       :: else -> skip
       fi
    :: else -> skip
    fi;
    ok = 0
}

/* Parker::unpark */
inline unpark(w) {
#ifdef MUT_PARKER_NO_NOTIFIED_STATE
    atomic { prev = parker[w]; if :: prev == PARKED -> parker[w] = NOTIFIED :: else -> skip fi };
#else
    atomic { prev = parker[w]; parker[w] = NOTIFIED };
#endif
    if
    :: prev == PARKED -> fwait[w] = 0            /* futex_wake */
    :: else -> skip
    fi;
    prev = 0
}

/* scheduler.cpp notify_parked */
inline notify_parked() {
    should_wake(ok);
    if
    :: ok ->
       worker_to_notify(r);
       if
       :: r != NONE -> unpark(r)
       :: else -> skip
       fi;
       r = 0
    :: else -> skip
    fi;
    ok = 0
}

/* Parker::park (no timeout) */
inline parker_park(w) {
    atomic { if :: parker[w] == NOTIFIED -> parker[w] = EMPTY; ok = 1 :: else -> ok = 0 fi };
    if
    :: ok -> skip
    :: else ->
       atomic { if :: parker[w] == EMPTY -> parker[w] = PARKED; ok = 1 :: else -> ok = 0 fi };
       if
       :: !ok -> parker[w] = EMPTY               /* NOTIFIED in between: exchange(EMPTY) */
       :: else ->
          do
          :: atomic {                            /* futex_wait(&state_, PARKED) */
                 if
                 :: parker[w] == PARKED -> fwait[w] = 1
                 :: else -> skip
                 fi
             };
             (fwait[w] == 0);                    /* asleep until futex_wake */
             atomic { if :: parker[w] == NOTIFIED -> parker[w] = EMPTY; ok = 1 :: else -> ok = 0 fi };
             if
             :: ok -> break
             :: else -> skip                     /* spurious: sleep again */
             fi
          od
       fi
    fi;
    ok = 0
}

/* scheduler.cpp work_pending: one load per queue, in order */
inline work_pending(r) {
    r = 0;
    i = 0;
    do
    :: i < NW -> if :: nempty(lq[i]) -> r = 1 :: empty(lq[i]) -> skip fi; i++
    :: else -> break
    od;
    if :: nempty(inj) -> r = 1 :: empty(inj) -> skip fi;
    i = 0
}

proctype worker(byte me) {
    bit searching, ok, pend, found;
    byte t, r, prev, i, v, n, s;

#ifdef START_PARKED
    goto asleep;                    /* init listed us as parked already */
#endif
    do
    :: shutdown -> break
    :: else ->
       /* next_task: own queue, then the inject queue */
       atomic { if :: nempty(lq[me]) -> lq[me]?t :: empty(lq[me]) -> t = 0 fi };
       if
       :: t == 0 -> atomic { if :: nempty(inj) -> inj?t :: empty(inj) -> skip fi }
       :: else -> skip
       fi;
       /* steal_work */
       if
       :: t == 0 ->
          if
          :: !searching ->
             atomic { s = nsearch };                       /* to_searching: load */
             if
             :: 2 * s >= NW -> skip                         /* refused */
             :: else ->
                atomic { nsearch++; assert(nsearch <= nunpark) };
                searching = 1
             fi;
             s = 0
          :: else -> skip
          fi;
          if
          :: searching ->
             v = 0;
             do
             :: v < NW && t == 0 ->
                if
                :: v != me ->
                   atomic {                                 /* steal_into: half */
                       n = len(lq[v]);
                       n = n - n / 2;
                       if
                       :: n > 0 ->
                          do
                          :: n > 1 -> lq[v]?t; lq[me]!t; n--
                          :: n == 1 -> lq[v]?t; n = 0; break
                          od
                       :: else -> skip
                       fi
                   }
                :: else -> skip
                fi;
                v++
             :: else -> break
             od;
             v = 0;
             if
             :: t == 0 -> atomic { if :: nempty(inj) -> inj?t :: empty(inj) -> skip fi }
             :: else -> skip
             fi
          :: else -> skip
          fi
       :: else -> skip
       fi;
       if
       :: t != 0 ->
          /* run_with_lifo: leave_searching, then run_task */
          if
          :: searching ->
             searching = 0;
             atomic { prev = nsearch; nsearch-- };          /* from_searching */
#ifndef MUT_NO_LAST_SEARCHER
             /* the last searcher wakes another only for work still queued
              * and only if some worker is parked (may_want_notify: a
              * relaxed load; after a SeqCst fence: the loads follow the
              * RMW) */
             if
             :: prev == 1 ->
                atomic { pend = (nsearch == 0 && nunpark < NW) };
                if
                :: pend -> work_pending(pend)
                :: else -> skip
                fi;
                if
                :: pend -> notify_parked()
                :: else -> skip
                fi;
                pend = 0
             :: else -> skip
             fi;
#endif
             prev = 0
          :: else -> skip
          fi;
          if
          :: t == PLAIN -> done++
          :: t == CHILD -> child_done = 1; done++
          :: t == PARENT ->
             /* spawn CHILD locally: schedule_local -> push_back, then
              * notify_parked_local; then stay in this poll until it ran */
#ifdef MUT_NO_PUSH_FENCE
             atomic { ok = (nsearch == 0 && nunpark < NW) };  /* load hoisted above the push */
             lq[me]!CHILD;
#else
             lq[me]!CHILD;
             /* seq_cst fence */
             atomic { ok = (nsearch == 0 && nunpark < NW) };  /* may_want_notify */
#endif
             if
             :: ok ->
                worker_to_notify(r);
                if
                :: r != NONE -> unpark(r)
                :: else -> skip
                fi;
                r = 0
             :: else -> skip
             fi;
             ok = 0;
             child_done;                                      /* the long poll */
             done++
          fi;
          t = 0
       :: else ->
          /* park(w) */
          if
          :: nempty(lq[me]) -> skip                           /* own queue not empty */
          :: empty(lq[me]) ->
#ifdef MUT_NO_PARK_FENCE
             work_pending(pend);                             /* loads hoisted above to_parked */
#endif
             atomic {                                        /* to_parked */
                 mu == 0 -> mu = 1;                          /* lock */
                 nunpark--;                                  /* fetch_sub(seq_cst) */
                 if :: searching -> nsearch-- :: else -> skip fi;
                 assert(nsearch <= nunpark);
                 i = 0;
                 do
                 :: i < nsleep -> assert(sleepers[i] != me); i++
                 :: else -> break
                 od;
                 sleepers[nsleep] = me; nsleep++; i = 0;
                 mu = 0                                      /* unlock */
             };
#ifdef MUT_RECHECK_IF_SEARCHING
             found = searching;
#endif
             searching = 0;
             /* seq_cst fence */
#if defined(MUT_NO_RECHECK)
             pend = 0;
#elif defined(MUT_NO_PARK_FENCE)
             skip;
#elif defined(MUT_RECHECK_IF_SEARCHING)
             if
             :: found -> work_pending(pend)
             :: else -> pend = 0
             fi;
             found = 0;
#else
             work_pending(pend);
#endif
             if
             :: pend -> notify_parked()
             :: else -> skip
             fi;
             pend = 0;
asleep:      do
             :: parker_park(me);
                if
                :: shutdown ->
                   /* unpark_self */
                   atomic {
                       mu == 0 -> mu = 1;                    /* lock */
                       found = 0;
                       i = 0;
                       do
                       :: i < nsleep && sleepers[i] == me ->
                          nsleep--; sleepers[i] = sleepers[nsleep]; sleepers[nsleep] = 0;
                          nunpark++; found = 1; break
                       :: i < nsleep && sleepers[i] != me -> i++
                       :: else -> break
                       od;
                       i = 0; found = 0;
                       mu = 0                                /* unlock */
                   };
                   break
                :: else -> skip
                fi;
                /* is_parked */
                atomic {
                    mu == 0 -> mu = 1;                       /* lock */
                    found = 0;
                    i = 0;
                    do
                    :: i < nsleep -> if :: sleepers[i] == me -> found = 1 :: else -> skip fi; i++
                    :: else -> break
                    od;
                    i = 0;
                    mu = 0                                   /* unlock */
                };
                if
                :: !found -> searching = 1; break            /* a notifier chose us */
                :: else -> found = 0                         /* spurious: sleep again */
                fi
             od
          fi
       fi
    od;
    /* drain_worker: nothing may be left */
    assert(empty(lq[me]));
    exited++
}

/* remote_push for each task: inject queue, then notify_parked */
proctype remote() {
    bit ok;
    byte r, prev, k;
    atomic { inj!PARENT };
    notify_parked();
    k = 0;
    do
    :: k < NPLAIN -> atomic { inj!PLAIN; k++ }; notify_parked()
    :: else -> break
    od
}

/* runtime_free once every task ran: shutdown, unpark all, join */
proctype main() {
    byte w, prev;
    (done == TOTAL);
    assert(empty(inj));
    shutdown = 1;
    w = 0;
    do
    :: w < NW -> unpark(w); w++
    :: else -> break
    od;
    (exited == NW)
}

init {
    byte w;
    atomic {
#ifdef START_PARKED
        /* an idle runtime: every worker has parked (to_parked done) */
        nunpark = 0;
        w = 0;
        do
        :: w < NW -> sleepers[w] = w; w++
        :: else -> break
        od;
        nsleep = NW;
#else
        nunpark = NW;
#endif
        w = 0;
        do
        :: w < NW -> run worker(w); w++
        :: else -> break
        od;
        run remote();
        run main()
    }
}

ltl terminates { <> (exited == NW) }
