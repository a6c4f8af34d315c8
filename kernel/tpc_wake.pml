/* kernel/tpc_wake.pml -- SPIN model of the thread-per-core executor's
 * cross-thread wake (kernel/tpc.h, tpc.cpp): the per-slot `queued` flag,
 * the Treiber stack of slot indices through remote_next that the owner takes
 * whole, and the sleeping flag that elides the signal (eventfd write or
 * MSG_RING) while the owner is awake.
 *
 * WHAT IT MODELS
 *   Two tasks (slots 0 and 1) on one owner. NWAKE wakers each publish an
 *   event for a task of their choice (either slot, chosen by SPIN) and then
 *   wake it from another thread (wake_remote + notify in tpc.cpp):
 *     queued.exchange(1); if it was 0: push the slot (read head, write
 *     remote_next, CAS head; retried); then if sleeping: exchange it to 0
 *     and, if it was 1, signal (the eventfd counter goes up).
 *   The owner loops (run + park in tpc.cpp): take the stack (exchange head
 *   to 0), walk it reading remote_next *before* clearing queued, schedule
 *   each slot; poll every ready task (a poll observes every event published
 *   so far); then park: sleeping = 1, re-check the stack, and wait until the
 *   eventfd counter is nonzero; drain it; sleeping = 0.
 *   Each step on a shared word is one atomic step: the code makes every one
 *   of them an RMW or a seq_cst access, and SPIN's interleavings are
 *   sequentially consistent.
 *
 * PROPERTY
 *   No lost wake-up: the owner never blocks in its wait, after every waker
 *   is done, while a task has an event it has not observed (an invalid end
 *   state in the safety run). Also asserted: a slot is never on the stack
 *   twice (the queued flag's job), so remote_next is never overwritten while
 *   the owner may still read it.
 *
 * COMMAND (tests/check_models.sh)
 *   spin -a kernel/tpc_wake.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * RESULTS (spin 6.5.2): NWAKE=2: 43,082 states; NWAKE=3: 2,853,835 states;
 *   errors: 0. Each mutation below: an invalid end state (the owner asleep
 *   with an event owed). MUT_CLEAR_BEFORE_NEXT needs NWAKE=3 (two entries on
 *   the taken list and a third wake that pushes the first again).
 *
 * MUTATIONS (tests/check_models.sh --mutations; each must fail)
 *   -DMUT_CLEAR_BEFORE_NEXT   the owner clears queued before reading
 *                             remote_next (a waker may push the slot again
 *                             and cut the rest of the taken list off)
 *   -DMUT_NO_RECHECK          the owner parks without re-checking the stack
 *                             after setting sleeping
 *   -DMUT_SIGNAL_ALWAYS_SKIP  a waker never signals (the sleeping flag
 *                             would be the only wake path)
 */

#ifndef NWAKE
#define NWAKE 2
#endif

byte head = 0;           /* Mailbox::wake_head: slot + 1, 0 = empty */
byte next[2];            /* Slot::remote_next */
bit queued[2];           /* Slot::queued */
bit ready[2];            /* owner: the task is on the ready queue */
byte published[2];       /* events published by wakers, per task */
byte seen[2];            /* events a poll of the task has observed */
bit sleeping = 0;        /* Mailbox::sleeping */
byte counter = 0;        /* the eventfd's counter */
byte wakers_done = 0;
byte onstack[2];         /* how many times each slot is on the stack (check) */

proctype waker() {
    byte s, h, prev;
    if
    :: s = 0
    :: s = 1
    fi;
    atomic { published[s]++ };
    /* wake_remote: queued.exchange(1) */
    atomic { prev = queued[s]; queued[s] = 1 };
    if
    :: prev == 0 ->
       /* push: h = head; do { next[s] = h } while (!CAS(head, h, s + 1)) */
       h = head;
retry: next[s] = h;
       atomic {
           if
           :: head == h -> head = s + 1; onstack[s]++; assert(onstack[s] == 1)
           :: else -> h = head; goto retry
           fi
       };
       /* notify: if (sleeping.load() && sleeping.exchange(0)) signal */
#ifdef MUT_SIGNAL_ALWAYS_SKIP
       skip;
#else
       if
       :: sleeping == 1 ->
          atomic { prev = sleeping; sleeping = 0 };
          if
          :: prev == 1 -> atomic { counter++ }
          :: else -> skip
          fi
       :: else -> skip
       fi;
#endif
    :: else -> skip   /* merged: the slot is queued, its drain will schedule the task */
    fi;
    atomic { wakers_done++ }
}

proctype owner() {
    byte cur, s, n;
    do
    :: atomic { wakers_done == NWAKE && seen[0] == published[0] && seen[1] == published[1] } -> break
    :: else ->
       /* drain_wakes: h = wake_head.exchange(0); walk it */
       atomic { cur = head; head = 0 };
       do
       :: cur != 0 ->
          s = cur - 1;
#ifdef MUT_CLEAR_BEFORE_NEXT
          atomic { queued[s] = 0; onstack[s] = 0 };
          n = next[s];
#else
          n = next[s];
          atomic { queued[s] = 0; onstack[s] = 0 };
#endif
          ready[s] = 1;
          cur = n
       :: else -> break
       od;
       /* run: poll every ready task; a poll observes all published events */
       if
       :: ready[0] -> atomic { seen[0] = published[0]; ready[0] = 0 }
       :: else -> skip
       fi;
       if
       :: ready[1] -> atomic { seen[1] = published[1]; ready[1] = 0 }
       :: else -> skip
       fi;
       /* park: sleeping = 1; re-check; wait for the eventfd; sleeping = 0 */
       sleeping = 1;
#ifdef MUT_NO_RECHECK
       if
       :: true ->
#else
       if
       :: head != 0 -> sleeping = 0
       :: else ->
#endif
          /* Blocks until signalled. When every waker is done and nothing is
           * owed, let it end (a real executor would sleep until the next
           * spawn or stop, which is not a lost wake); with an event owed and
           * no signal coming it blocks for ever: an invalid end state. */
          atomic { counter > 0 || (wakers_done == NWAKE && seen[0] == published[0] && seen[1] == published[1]) };
          atomic { counter = 0 };
          sleeping = 0
       fi
    od
}

init {
    byte k;
    atomic {
        run owner();
        k = 0;
        do
        :: k < NWAKE -> run waker(); k++
        :: else -> break
        od
    }
}
