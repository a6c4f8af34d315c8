/* kernel/local_queue.pml -- SPIN model of kernel/local_queue.h (LocalQueue).
 *
 * WHAT IT MODELS
 *   The packed-head run queue: queue 0's owner pushes NTASKS tasks (push_back,
 *   with its overflow path push_back_slow / push_overflow into the inject
 *   queue) and pops some of them (pop) in every possible order, while one or
 *   two thieves run steal_into(dst = their own queue) against queue 0 and then
 *   pop what they stole from their own queue (as the owner of dst). Capacity
 *   is 4 (the test seam of local_queue.h) so overflow, "push during a steal"
 *   and wrap-around are all reached. Indices are 8 bits wide instead of 32
 *   and start at START = 254, so every run wraps them; with fewer than 256
 *   pushes per run no head value can repeat inside a CAS window, which is the
 *   same argument the 32-bit C++ indices rely on (ABA needs 2^32 pushes).
 *
 *   Every atomic access of the C++ is one Promela step, in program order:
 *     head_.load / tail_.load / buffer_[i].load / .store : one read or write
 *     compare_exchange_{weak,strong} on head_       : one atomic CAS step
 *       (cas_head below: on failure it returns the current value, as the C++
 *       does). A spurious failure of compare_exchange_weak returns the value
 *       already held, so the loop recomputes the same step: a stutter that
 *       adds no behaviour, so weak CASes are modelled as strong ones.
 *   Thread-local arithmetic is folded into the step that reads its inputs
 *   (it is invisible to other threads). The owner's reads of its own tail_
 *   are folded too (it is the only writer).
 *
 * MAPPING (model -> C++)
 *   hs[q], hr[q]   steal_of(head_), real_of(head_) of queue q; always read and
 *                  written together: they are the one 64-bit word head_
 *   tl[q]          tail_ of queue q
 *   buf[q*CAP+i]   buffer_[i] of queue q (task ids 1..NTASKS; 0 = never written)
 *   live[...]      ghost: the slot holds a task not yet taken by anyone
 *   got[t]         ghost: how many times task t was handed out (pop,
 *                  steal_into's return value, popped later from a thief's
 *                  queue, or moved to the inject queue by the overflow sink)
 *   owner()        LocalQueue::push_back / push_back_slow / push_overflow /
 *                  pop on queue 0
 *   thief(me)      LocalQueue::steal_into / steal_into2 from queue 0 into
 *                  queue me, then pop on queue me
 *   sink()         InjectSink::push_batch (scheduler.cpp)
 *
 * PROPERTIES AND HOW THEY ARE CHECKED
 *   - no task delivered twice: assert(got[t] == 0) whenever t is handed out;
 *   - no slot overwritten while it still holds a task nobody took (this is
 *     "no overflow past capacity"): assert(!live[slot]) before every slot
 *     store; no slot read after it was taken or before it was written:
 *     assert(live[slot]) on every read that takes a task; a thief never
 *     writes more than CAP tasks into its own ring (same assertion on dst);
 *   - no task lost: when every process has finished, checker() asserts
 *     got[t] == 1 for every pushed t and that every queue is empty with
 *     steal == real == tail;
 *   - no deadlock: the default safety run reports any invalid end state;
 *   - termination: the LTL property `terminates` (<> all processes
 *     finished), checked under weak fairness (pan -a -f): no CAS retry loop
 *     can run forever while the others make progress.
 *
 * COMMAND (tests/check_models.sh runs these; -DCOLLAPSE is lossless
 * compression, the search stays exhaustive)
 *   spin [-D...] -a kernel/local_queue.pml
 *   cc -O2 -DSAFETY -DNOCLAIM -DCOLLAPSE -DMEMLIM=3000 -o pan pan.c
 *   ./pan -m1000000                                  (safety)
 *   cc -O2 -DCOLLAPSE -DMEMLIM=3000 -o pan pan.c
 *   ./pan -a -f -m1000000                            (liveness: `terminates`)
 *   Knobs: -DTHIEVES=1|2 (default 2), -DNTASKS (6), -DOWNER_POPS (2),
 *   -DTRIES (steal_into calls per thief, 1), -DSTART (first index, 254).
 *
 * RESULTS (spin 6.5.2, 2 cores shared with other builds; errors: 0 in all)
 *   safety,   2 thieves, 6 tasks, 2 pops, 1 steal each:  14,275,592 states, 17 s
 *   safety,   1 thief, 7 tasks, 2 pops, 3 steals:        1,871,924 states,  5 s
 *   liveness, 2 thieves, 5 tasks, 1 pop, 1 steal each:   3,290,727 states, 34 s
 *   liveness, 1 thief, 7 tasks, 2 pops, 3 steals:        1,871,209 states, 18 s
 *   No bug found in LocalQueue.
 *
 * MUTATIONS (each must make SPIN fail; tests/check_models.sh --mutations
 * builds the model with the -D flag and expects an error)
 *   -DMUT_STEAL_NO_CAS     steal_into2 claims with a plain load+store instead
 *                          of the CAS (a thief overwrites a concurrent pop)
 *   -DMUT_PUSH_REAL_HEAD   push_back's fast path measures room from the real
 *                          head instead of the steal head (the owner
 *                          overwrites slots a thief has claimed but not copied)
 *   -DMUT_NO_STEAL_GUARD   steal_into2 does not refuse while another steal is
 *                          in progress (steal != real)
 *   -DMUT_FINISH_STORE     the steal is finished with a plain store of the
 *                          claim-time head instead of a CAS loop (undoes the
 *                          owner's pops during the steal)
 * Results: the first four are caught (run with the default 2-thief
 * configuration, each in under a second of search):
 *   MUT_STEAL_NO_CAS    owner's push_overflow reads a slot a thief already
 *                       took (assert live[] in slot_take): a task twice
 *   MUT_PUSH_REAL_HEAD  owner overwrites a claimed, uncopied slot
 *                       (assert !live[] in slot_store)
 *   MUT_NO_STEAL_GUARD  two thieves copy the same slots (needs 2 thieves;
 *                       the 1-thief configuration cannot show it)
 *   MUT_FINISH_STORE    the owner pops a slot again after the thief's store
 *                       rolled the real head back
 * A fifth mutation, -DMUT_NO_ROOM_CHECK (steal_into without its "dst has
 * room for half" check), survives: in these bounds a thief's own queue never holds more than one
 * task before it steals again (the scheduler steals only when its queue is
 * empty), so the check is defensive here; test_local_queue covers it.
 */

#ifndef THIEVES
#define THIEVES 2
#endif
#ifndef NTASKS
#define NTASKS 6
#endif
#ifndef OWNER_POPS
#define OWNER_POPS 2          /* pops the owner may interleave with its pushes */
#endif
#ifndef TRIES
#define TRIES 1               /* steal_into calls per thief */
#endif
#ifndef START
#define START 254
#endif

#define CAP 4
#define MASK 3
#define HALF 2                 /* CAP / 2: push_overflow's NUM, steal_into's limit */
#define NQ (THIEVES + 1)
#define W(x) ((x) & 255)       /* the model's index width: 8 bits */

byte hs[NQ];                   /* head_: steal half */
byte hr[NQ];                   /* head_: real half  */
byte tl[NQ];                   /* tail_ */
byte buf[NQ * CAP];
bit  live[NQ * CAP];
byte got[NTASKS + 1];
byte finished;

/* head_.compare_exchange(prev, next): one atomic step; on failure the
 * expected value is refreshed with the current head (as in C++). */
inline cas_head(cq, eps, epr, nps, npr, cok) {
    atomic {
        if
        :: hs[cq] == eps && hr[cq] == epr -> hs[cq] = nps; hr[cq] = npr; cok = 1
        :: else -> eps = hs[cq]; epr = hr[cq]; cok = 0
        fi
    }
}

inline deliver(t) {
    d_step {
        assert(t >= 1 && t <= NTASKS);
        assert(got[t] == 0);            /* never handed out twice */
        got[t] = 1
    }
}

/* buffer_[idx & MASK].store(task): the slot must not hold a live task. */
inline slot_store(q, idx, task) {
    d_step {
        assert(!live[q * CAP + (idx & MASK)]);   /* no overwrite past capacity */
        buf[q * CAP + (idx & MASK)] = task;
        live[q * CAP + (idx & MASK)] = 1
    }
}

/* buffer_[idx & MASK].load() of a slot whose task the caller now takes. */
inline slot_take(q, idx, task) {
    d_step {
        assert(live[q * CAP + (idx & MASK)]);    /* written, and not taken yet */
        task = buf[q * CAP + (idx & MASK)];
        live[q * CAP + (idx & MASK)] = 0
    }
}

/* LocalQueue::pop() on queue q, by q's owner. r = 0 for nullptr. */
inline pop(q, r) {
    atomic { ps = hs[q]; pr = hr[q] }           /* head_.load(acquire) */
    do
    :: t = tl[q];                               /* tail_.load: own queue */
       if
       :: pr == t -> r = 0; break              /* empty */
       :: else ->
          if
          :: ps == pr -> ns = W(pr + 1)       /* both halves move together */
          :: else -> ns = ps
          fi;
          cas_head(q, ps, pr, ns, W(pr + 1), ok);
          if
          :: ok -> idx = pr; r = 1; break
          :: else -> skip
          fi
       fi
    od;
    if
    :: r -> slot_take(q, idx, r); deliver(r)
    :: else -> skip
    fi;
    atomic { ps = 0; pr = 0; ns = 0; t = 0; idx = 0; ok = 0 }
}

/* InjectSink::push_batch: the tasks leave the local queue (model: handed out). */
inline sink(task) {
    deliver(task)
}

/* LocalQueue::push_back + push_back_slow + push_overflow, queue 0 (owner). */
inline push_back(task) {
    atomic { ps = hs[0]; t = tl[0] }            /* steal_of(head_.load(acquire)); own tail */
#ifdef MUT_PUSH_REAL_HEAD
    ps = hr[0];
#endif
    if
    :: W(t - ps) < CAP ->
       slot_store(0, t, task);
       tl[0] = W(t + 1)                        /* tail_.store(release) */
    :: else ->
       /* push_back_slow */
       do
       :: atomic { ps = hs[0]; pr = hr[0]; t = tl[0] }
          if
          :: W(t - ps) < CAP ->
             slot_store(0, t, task);
             tl[0] = W(t + 1);
             break
          :: ps != pr ->
             /* a stealer is at work: just the task goes to the inject queue */
             sink(task);
             break
          :: else ->
             /* push_overflow(task, real, tail) */
             if
             :: W(t - pr) != CAP -> ok = 0     /* a stealer took some: retry */
             :: else ->
                ps = pr;                      /* expected pack(head, head) */
                cas_head(0, ps, pr, W(pr + HALF), W(pr + HALF), ok);
                if
                :: ok ->
                   /* pr is still the claimed head (the CAS succeeded) */
                   idx = 0;
                   do
                   :: idx < HALF -> slot_take(0, W(pr + idx), r); sink(r); idx++
                   :: else -> break
                   od;
                   sink(task)
                :: else -> skip
                fi
             fi;
             if
             :: ok -> break
             :: else -> skip
             fi
          fi
       od
    fi;
    atomic { ps = 0; pr = 0; ns = 0; t = 0; idx = 0; ok = 0; r = 0 }
}

proctype owner() {
    byte pushed = 0, pops = 0;
    byte ps, pr, ns, t, idx, r;
    bit ok;
    do
    :: pushed < NTASKS -> pushed++; push_back(pushed)
    :: pops < OWNER_POPS -> pops++; pop(0, r); r = 0
    :: pushed == NTASKS -> break
    od;
    /* drain what is left */
    do
    :: pop(0, r);
       if
       :: r == 0 -> break
       :: else -> r = 0
       fi
    od;
    finished++
}

/* steal_into(dst = me) from queue src, then pop me's own queue dry. */
proctype thief(byte me; byte src; byte tries) {
    byte ps, pr, ns, t, idx, r, n, dtail, first, i, got1;
    bit ok;
    do
    :: tries > 0 ->
       tries--;
       /* steal_into */
       atomic { dtail = tl[me]; ps = hs[me] }   /* own tail; steal_of(dst.head_.load(acquire)) */
#ifndef MUT_NO_ROOM_CHECK
       if
       :: W(dtail - ps) > HALF -> goto nexttry
       :: else -> skip
       fi;
#endif
       /* steal_into2 */
       atomic { ps = hs[src]; pr = hr[src] }    /* head_.load(acquire) */
       do
       :: skip ->
#ifndef MUT_NO_STEAL_GUARD
          if
          :: ps != pr -> n = 0; break          /* another stealer is at work */
          :: else -> skip
          fi;
#endif
          atomic { t = tl[src]; n = W(t - pr); n = n - n / 2 }   /* tail_.load(acquire) */
          if
          :: n == 0 -> break
          :: else -> skip
          fi;
#ifdef MUT_STEAL_NO_CAS
          atomic { hs[src] = ps; hr[src] = W(pr + n) };  ok = 1;
#else
          cas_head(src, ps, pr, ps, W(pr + n), ok);
#endif
          if
          :: ok -> break
          :: else -> skip
          fi
       od;
       if
       :: n == 0 -> goto nexttry
       :: else -> skip
       fi;
       /* next = pack(ps, pr + n); copy [ps, ps + n) into dst */
       first = ps;
       pr = W(pr + n);
       i = 0;
       do
       :: i < n ->
          /* one step: the store into dst's slot is invisible to others
           * until dst.tail_ is published below */
          atomic { slot_take(src, W(first + i), r); slot_store(me, W(dtail + i), r); r = 0; i++ }
       :: else -> break
       od;
       /* finish: steal head catches up with the real head */
#ifdef MUT_FINISH_STORE
       atomic { hs[src] = pr; hr[src] = pr };
#else
       do
       :: cas_head(src, ps, pr, pr, pr, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       od;
#endif
       /* back in steal_into: return the last one, publish the rest */
       n--;
       slot_take(me, W(dtail + n), r);
       deliver(r);
       r = 0;
       if
       :: n > 0 -> tl[me] = W(dtail + n)        /* dst.tail_.store(release) */
       :: else -> skip
       fi;
nexttry:
       atomic { ps = 0; pr = 0; ns = 0; t = 0; n = 0; dtail = 0; first = 0; i = 0; ok = 0 }
    :: else -> break
    od;
    /* run what was stolen: pop own queue dry (one step each: nobody
     * steals from a thief's queue in this model) */
    do
    :: atomic { pop(me, r) };
       if
       :: r == 0 -> break
       :: else -> r = 0
       fi
    od;
    finished++
}

proctype checker() {
    byte i;
    (finished == NQ);
    d_step {
        i = 1;
        do
        :: i <= NTASKS -> assert(got[i] == 1); i++     /* no task lost */
        :: else -> break
        od;
        i = 0;
        do
        :: i < NQ -> assert(hs[i] == hr[i] && hr[i] == tl[i]); i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NQ * CAP -> assert(!live[i]); i++
        :: else -> break
        od
    }
}

init {
    byte q;
    atomic {
        q = 0;
        do
        :: q < NQ -> hs[q] = START; hr[q] = START; tl[q] = START; q++
        :: else -> break
        od;
        run checker();
        run owner();
        run thief(1, 0, TRIES);
#if THIEVES >= 2
        run thief(2, 0, TRIES);
#endif
    }
}

ltl terminates { <> (finished == NQ) }
