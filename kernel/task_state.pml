/* kernel/task_state.pml -- SPIN model of kernel/task_state.h (TaskState) and
 * of the scheduler.cpp code that drives it for one task.
 *
 * WHAT IT MODELS
 *   One spawned task with a join handle (TaskState::init_running(with_join =
 *   true), queued RUNNING with resume_running set, as task_spawn does),
 *   and every thread that touches its state word at once:
 *     worker(): two workers taking queue entries from one run queue and
 *       running run_task(): the resume_running shortcut, transition_to_running
 *       and its four outcomes, the poll, the self-wake (yield) path that
 *       re-queues the task still RUNNING, transition_to_idle and its four
 *       outcomes, complete() (its fast path for a task nobody else can
 *       reach, owned_remove, transition_to_complete, the join waker wake,
 *       unset_join_waker_after_complete, the last ref_dec) and
 *       cancel_task().
 *     The future: the first poll clones the task waker twice (ref_inc) and
 *       hands one clone to source() and one to foreign(); it returns Ready
 *       once source() has raised its event, else Pending, and may wake itself
 *       once (by ref, or by value through another clone: t == t_current).
 *     source(): the event the future waits for, on another thread: raises it,
 *       then wake_by_val, or wake_by_ref + drop.
 *     foreign(): a foreign holder of a waker: wake_by_val, or wake_by_ref +
 *       drop, or just drop, at any moment (during a poll, after completion..).
 *     joiner(): the join handle: optionally join_abort(); optionally awaits
 *       with join_poll() (sometimes re-polled before being woken, and then
 *       with a different waker, so the unset_join_waker path runs); takes the
 *       output; join_free() (fast path or slow path). Or, as a plain
 *       thread's weft_join_wait (join_wait, retract_thread_waker): after an
 *       optional weft_join_poll with a task waker, polls with the thread
 *       waker (a Parker on its stack, no refcount), parks until unparked or
 *       times out, and takes its waker back out of the field before the
 *       stack frame goes (ghost parker_alive: the completer wakes that
 *       waker only while it is set).
 *     reaper(): when complete() runs on a thread that is not the task's
 *       owned-list owner, owned_remove() pushes the task on the owner's done
 *       stack and the owner's reap() drops the list's ref later.
 *     timer() (-DBORROWED_TIMER): a timer in the task's own memory that the
 *       first poll registers with the task's waker borrowed (no reference;
 *       kernel/timer.h "Borrowed wakers"), left registered until the task's
 *       drop cancels it (cancel_timer, which waits for the wheel's lock);
 *       the firing thread, under that lock, stores FIRING, makes a wake by
 *       reference's transition, stores FIRED, and schedules the task after
 *       unlocking. The future is ready once its event came or its timer
 *       fired (timer_poll: FIRING waits for the lock).
 *   Shutdown (transition_to_shutdown, drop_queue_entry, runtime_free step 5)
 *   is not modelled.
 *
 *   Fidelity: the state word is the same packed integer as in C++ (same bit
 *   values, refcount from bit 6). fetch_update() is modelled as it is
 *   written: one load, then the closure on a local copy, then a CAS that on
 *   failure reloads and reruns the closure -- so a closure that forgets to
 *   reset an outcome on a retry is caught. ref_inc/ref_dec/fetch_and are one
 *   atomic step each. Promela is sequentially consistent; every RMW in
 *   task_state.h is acq_rel on one location, and the plain fields
 *   (resume_running, stage, result, join_waker) are handed over through those
 *   RMWs or through the run queue's lock, so SC loses nothing here.
 *
 * MAPPING (model -> C++)
 *   word               TaskState::word_ (RUNNING=1 COMPLETE=2 NOTIFIED=4
 *                      JOIN_INTEREST=8 JOIN_WAKER=16 CANCELLED=32, REF_ONE=64)
 *   runq               the run queues (LIFO slot, local, inject): a message
 *                      is one queue entry (it owns the NOTIFIED ref)
 *   resume_running     TaskHeader::resume_running
 *   stage, result      TaskHeader::stage, ::result
 *   jw_field           TaskHeader::join_waker (0 none, 1 or 2: a task's
 *                      waker, TW = 3: join_wait's thread waker)
 *   jw_refs            ghost: live clones of the join handle's waker
 *   join_woken         the join handle's waker was woken
 *   freed, completed, polling, taken, output_drops, future_drops: ghosts
 *
 * PROPERTIES AND HOW THEY ARE CHECKED
 *   - never polled by two threads at once, never polled after COMPLETE:
 *     assert(polling == 0 && !(word & COMPLETE)) when a poll starts;
 *   - scheduled at most once at a time: assert(len(runq) == 0) on every push;
 *   - refcount never underflows: every decrement asserts refs >= 1 first;
 *   - memory released exactly once, never touched after: dealloc asserts
 *     !freed; every access to word asserts !freed; at the end freed == 1;
 *   - the join waker field: the handle writes it only while JOIN_WAKER is
 *     clear, the runtime reads it only while JOIN_WAKER is set, and it is
 *     dropped exactly once (jw_refs never negative, 0 at the end);
 *   - output delivered exactly once: COMPLETE is published once (completed
 *     <= 1); the handle reads the output only after seeing COMPLETE and while
 *     the task is alive, at most once; drop_output runs at most once (at
 *     dealloc) and only for a Finished task; drop_future at most once;
 *   - no lost wake-up: checker() runs when the whole system is blocked
 *     (timeout) and asserts that the task completed (the source's wake after
 *     its event always leads to a poll that sees it, or the task was
 *     cancelled), that the join handle is not still waiting for its wake,
 *     that the run queue is empty and every reference is gone (freed == 1);
 *     any other stuck state is an invalid end state.
 *
 * COMMAND (tests/check_models.sh runs these; -DCOLLAPSE is lossless)
 *   spin [-D...] -a kernel/task_state.pml
 *   cc -O2 -DSAFETY -DNOCLAIM -DCOLLAPSE -DMEMLIM=3000 -o pan pan.c
 *   ./pan -m1000000
 *   Knobs: -DRMW_ATOMIC (each fetch_update one step), -DNO_FOREIGN,
 *   -DNO_REAPER, -DNO_ABORT, -DNO_JOIN_WAIT (leave one actor or path out),
 *   -DBORROWED_TIMER (add the timer() actor). Every actor at
 *   once with fetch_update in separate load/closure/CAS steps needs more than
 *   60 million states, so the runs split it three ways:
 *
 * RESULTS (spin 6.5.2, 2 cores shared with other builds; errors: 0 in all)
 *   -DRMW_ATOMIC            every actor, atomic RMWs:    13,534,496 states, 19 s
 *   -DNO_FOREIGN            CAS steps, no foreign waker:  5,468,695 states, 10 s
 *   -DNO_REAPER -DNO_ABORT -DNO_JOIN_WAIT
 *                           CAS steps, foreign waker:    13,138,073 states, 17 s
 *   -DRMW_ATOMIC -DINIT_NOTIFIED (queued NOTIFIED):      13,630,946 states, 21 s
 *   With the join wait too, the third one takes 29,860,126 states (1.5 GB,
 *   2.5 min); the join wait's CAS steps are covered by the second.
 *   -DRMW_ATOMIC -DBORROWED_TIMER -DNO_FOREIGN:           8,538,753 states, 15 s
 *   -DBORROWED_TIMER -DNO_FOREIGN -DNO_JOIN_WAIT (CAS steps): 20,551,563 states, 20 s
 *   (the timer with every actor and atomic RMWs passes 50 million states and
 *   the 3 GB cap: the timer stands in for the foreign waker there).
 *   No bug found in TaskState or in the run_task / complete / join code.
 *
 * MUTATIONS (tests/check_models.sh --mutations; each must fail)
 *   -DMUT_IDLE_IGNORES_NOTIFIED  transition_to_idle drops the ref and goes
 *                                idle even when woken during the poll
 *   -DMUT_WAKE_RUNNING_SUBMITS   transition_to_notified_by_val submits the
 *                                task while it is RUNNING
 *   -DMUT_BYREF_NO_REF           transition_to_notified_by_ref submits
 *                                without taking a ref for the queue entry
 *   -DMUT_COMPLETE_NO_KEEP       transition_to_complete releases every ref
 *                                even when the caller must still wake the
 *                                join waker (and then touch the task)
 *   -DMUT_BYREF_NO_RESET         transition_to_notified_by_ref does not reset
 *                                its outcome when the CAS retries
 *   -DMUT_UNREF_NO_REFUSE        join_free's fast path goes ahead when the
 *                                task completed after its load (the outcome
 *                                then reaches no reporter: notices == 0)
 *   -DMUT_FAST_IGNORES_REFS      complete()'s fast path frees a task with
 *                                no join handle even while a waker holds a
 *                                reference
 *   -DMUT_JOIN_DROP_CLEARS_WAKER transition_to_join_handle_dropped clears
 *                                JOIN_WAKER even after COMPLETE (while the
 *                                runtime may be waking that waker)
 *   -DMUT_SOLO_IGNORES_REFS      join_free's solo path (free without an RMW)
 *                                taken while another reference (a waker, the
 *                                runner's, the owned list's) is still held
 *   -DMUT_NO_RETRACT             join_wait returns without retracting its
 *                                thread waker
 *   -DMUT_RETRACT_NO_WAIT        retract_thread_waker does not wait for the
 *                                completer to hand the field back (JOIN_WAKER
 *                                clear) when the task completed first
 *   -DMUT_RETRACT_ANY_WAKER      retract_thread_waker empties the field
 *                                whatever waker it holds (an earlier
 *                                weft_join_poll's is then never dropped:
 *                                the leak fuzz_abi found)
 *   -DMUT_TIMER_NO_FIRING        (with -DBORROWED_TIMER) the firing thread
 *                                leaves the entry REGISTERED during its
 *                                transition (no FIRING)
 *   -DMUT_TIMER_CLONES           (with -DBORROWED_TIMER) the firing thread
 *                                takes a reference it does not hold (a
 *                                clone from nothing, refused only at a
 *                                count of 0: the design first tried) and
 *                                wakes by value after the lock
 * Results (all caught, each within 0.1-2 s of search):
 *   IDLE_IGNORES_NOTIFIED  the source's wake is lost: checker finds the
 *                          event set but the task never completed
 *   WAKE_RUNNING_SUBMITS   a second queue entry while polling (len(runq))
 *   BYREF_NO_REF           use after free (assert !freed)
 *   COMPLETE_NO_KEEP       use after free when waking the join waker
 *   BYREF_NO_RESET         (needs the CAS-step configuration -DNO_FOREIGN)
 *                          a retry keeps a stale Submit: a second entry
 *   JOIN_DROP_CLEARS_WAKER the join waker is dropped twice (jw_refs)
 *   NO_RETRACT             the completer wakes the thread waker after its
 *                          Parker's frame is gone (parker_alive)
 *   RETRACT_NO_WAIT        the completer finds the field emptied under it
 *                          while JOIN_WAKER says it is the runtime's
 *   RETRACT_ANY_WAKER      an earlier poll's waker is never dropped
 *                          (checker: jw_refs != 0)
 *   TIMER_NO_FIRING        a lost wake: the poll that the timer's wake
 *                          caused saw REGISTERED and went idle; the timer
 *                          fired, the task never finished (checker)
 *   TIMER_CLONES           join_free's solo path finds the word changed
 *                          after its load (word == cur): it would free the
 *                          task while the timer's reference is in flight
 * Mutations tried that the model (rightly) does not flag:
 *   - transition_to_idle ignoring CANCELLED: harmless, because an abort
 *     during a poll also sets NOTIFIED, so the task is re-queued and the next
 *     transition_to_running returns Cancelled (two defences; one suffices);
 *   - run_task's resume_running path ignoring CANCELLED: one extra poll
 *     after an abort, then transition_to_idle reports Cancelled;
 *   - transition_to_running leaving NOTIFIED set: every poll re-queues the
 *     task (a busy loop, not a safety violation; this model has no
 *     liveness property).
 */

#define RUNNING        1
#define COMPLETE       2
#define NOTIFIED       4
#define JOIN_INTEREST  8
#define JOIN_WAKER     16
#define CANCELLED      32
#define LIFECYCLE      3
#define REF_ONE        64
#define REFS(w)        ((w) / REF_ONE)

/* outcomes */
#define TR_SUCCESS 0
#define TR_CANCELLED 1
#define TR_FAILED 2
#define TR_FAILED_DEALLOC 3
#define TI_OK 0
#define TI_OK_NOTIFIED 1
#define TI_OK_DEALLOC 2
#define TI_CANCELLED 3
#define TN_NOTHING 0
#define TN_SUBMIT 1
#define TN_DEALLOC 2

#define ST_FUTURE 0
#define ST_FINISHED 1
#define ST_DROPPED 2

#define WEFT_ECANCELED 1
#define TW 3            /* jw_field: join_wait's thread waker */

short word;
short solo_word;   /* ghost: the word join_free's solo path saw (0: none); unchanged until the free */
chan runq = [2] of { bit };
bit resume_running;
byte stage;
byte result;
byte jw_field;
byte jw_refs;
bit join_woken;
bit join_waiting;
bit parker_alive;   /* join_wait's Parker (the thread waker TW) is on a live stack frame */
bit reap_pending;
bit linked;     /* TaskHeader::owned_shard != OWNED_UNBOUND: it suspended once */

/* the future and the threads that hold its wakers */
bit ev;
bit cloned;
bit s_has, f_has;
byte yields;

/* a timer in the task's own memory, holding a borrowed waker (-DBORROWED_TIMER) */
bit timer_armed;   /* REGISTERED in a wheel */
bit wheel_lock;    /* the wheel's lock, held by the firing thread */
bit timer_firing;  /* TimerEntry::FIRING (only while wheel_lock is held) */
bit timer_fired;   /* TimerEntry::FIRED was stored (a ghost: never cleared) */

/* ghosts */
bit freed;
byte completed;
byte notices;   /* the outcome handed to exactly one of: the completion (no
                 * handle left) or join_free (complete when the handle went):
                 * where an unread failure is reported (kernel/failure.h) */
byte polling;
byte taken;
byte output_drops;
byte future_drops;

/* ---- the atomic primitives on word ------------------------------------ */

/* fetch_update(): by default its load, closure and CAS are separate steps
 * (a failed CAS reruns the closure); with -DRMW_ATOMIC the whole RMW is one
 * step, which is what a correct fetch_update amounts to, and lets the model
 * afford every actor at once. Both end by clearing the locals they used. */
#ifdef RMW_ATOMIC
#define RMW_BEGIN atomic {
#define RMW_END   cur = 0; s = 0 }
#else
#define RMW_BEGIN
#define RMW_END   atomic { cur = 0; s = 0 }
#endif

inline load(cur) {
    atomic { assert(!freed); cur = word }
}

/* the CAS of fetch_update: on failure, cur is refreshed */
inline cas(cur, nw, ok) {
    atomic {
        assert(!freed);
        if
        :: word == cur -> word = nw; ok = 1
        :: else -> cur = word; ok = 0
        fi
    }
}

inline ref_inc() {
    atomic { assert(!freed); assert(REFS(word) >= 1); word = word + REF_ONE }
}

/* TaskState::ref_dec(): last = this dropped the last reference */
inline ref_dec(last) {
    atomic {
        assert(!freed);
        assert(REFS(word) >= 1);               /* no underflow */
        word = word - REF_ONE;
        last = (REFS(word) == 0)
    }
}

/* weft_timer_cancel, from the task's drop (drop_output or drop_future), as
 * weft_time.h requires before the memory goes: waits for the wheel's lock. */
inline cancel_timer() {
#ifdef BORROWED_TIMER
    atomic { !wheel_lock -> timer_armed = 0 }
#else
    skip
#endif
}

inline dealloc() {
    cancel_timer();
    atomic {
        assert(!freed);                         /* released exactly once */
        assert(REFS(word) == 0);
        assert(solo_word == 0 || word == solo_word);   /* the solo path's claim holds to the free (its drop may wait for a firing timer) */
        if
        :: stage == ST_FINISHED -> output_drops++; assert(output_drops == 1)
        :: stage == ST_FUTURE -> assert(0)      /* "unreachable by the protocol" */
        :: else -> skip
        fi;
        stage = ST_DROPPED;
        if
        :: jw_field != 0 -> assert(jw_refs > 0); jw_refs--; jw_field = 0
        :: else -> skip
        fi;
        freed = 1
    }
}

/* schedule(): onto a run queue (any thread) */
inline schedule() {
    atomic { assert(len(runq) == 0); runq!1 }   /* scheduled at most once at a time */
}

/* ---- transitions (task_state.h) ---------------------------------------- */

inline transition_to_running(out) {
    RMW_BEGIN load(cur);
    do
    :: s = cur;
       if
       :: (s & LIFECYCLE) != 0 ->
          assert(REFS(s) >= 1);
          s = s - REF_ONE;
          out = (REFS(s) == 0 -> TR_FAILED_DEALLOC : TR_FAILED)
       :: else ->
          s = (s | RUNNING) & ~NOTIFIED;
          out = ((s & CANCELLED) != 0 -> TR_CANCELLED : TR_SUCCESS)
       fi;
       cas(cur, s, ok);
       if
       :: ok -> break
       :: else -> skip
       fi
    od; RMW_END
}

inline transition_to_idle(out) {
    RMW_BEGIN load(cur);
    do
    :: s = cur;
       if
       :: (s & CANCELLED) != 0 -> out = TI_CANCELLED; break   /* declined: no CAS */
       :: else ->
          s = s & ~RUNNING;
          if
#ifndef MUT_IDLE_IGNORES_NOTIFIED
          :: (s & NOTIFIED) != 0 -> out = TI_OK_NOTIFIED
#endif
          :: else ->
             assert(REFS(s) >= 1);
             s = s - REF_ONE;
             out = (REFS(s) == 0 -> TI_OK_DEALLOC : TI_OK)
          fi;
          cas(cur, s, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       fi
    od; RMW_END
}

/* kept: the caller still holds one ref; dl: the caller frees the task */
inline transition_to_complete(release, kept, dl) {
    RMW_BEGIN load(cur);
    do
    :: s = (cur & ~RUNNING) | COMPLETE;
       kept = ((s & JOIN_INTEREST) != 0 && (s & JOIN_WAKER) != 0);
#ifdef MUT_COMPLETE_NO_KEEP
       s = s - release * REF_ONE;
#else
       assert(REFS(s) >= release - kept);
       s = s - (release - kept) * REF_ONE;
#endif
       dl = (REFS(s) == 0);
       atomic {
           /* cas(cur, s, ok), and the ghost count in the same step */
           assert(!freed);
           if
           :: word == cur -> word = s; ok = 1; assert(completed == 0); completed++;   /* published once */
              if
              :: (s & JOIN_INTEREST) == 0 -> notices++   /* no handle: the completion reports */
              :: else -> skip
              fi
           :: else -> cur = word; ok = 0
           fi
       };
       if
       :: ok -> break
       :: else -> skip
       fi
    od; RMW_END
}

inline transition_to_notified_by_val(out) {
    RMW_BEGIN load(cur);
    do
    :: s = cur;
       if
       :: (s & RUNNING) != 0 ->
          s = s | NOTIFIED;
          assert(REFS(s) >= 1);
          s = s - REF_ONE;
#ifdef MUT_WAKE_RUNNING_SUBMITS
          s = s + REF_ONE;
          out = TN_SUBMIT
#else
          out = TN_NOTHING
#endif
       :: (s & RUNNING) == 0 && ((s & COMPLETE) != 0 || (s & NOTIFIED) != 0) ->
          assert(REFS(s) >= 1);
          s = s - REF_ONE;
          out = (REFS(s) == 0 -> TN_DEALLOC : TN_NOTHING)
       :: else ->
          s = s | NOTIFIED;
          out = TN_SUBMIT
       fi;
       cas(cur, s, ok);
       if
       :: ok -> break
       :: else -> skip
       fi
    od; RMW_END
}

inline transition_to_notified_by_ref(out) {
    RMW_BEGIN load(cur);
    do
    ::
#ifndef MUT_BYREF_NO_RESET
       out = TN_NOTHING;                       /* reset: this may be a retry */
#endif
       s = cur;
       if
       :: (s & COMPLETE) != 0 || (s & NOTIFIED) != 0 -> break   /* declined */
       :: else ->
          s = s | NOTIFIED;
          if
          :: (s & RUNNING) != 0 -> out = TN_NOTHING
          :: else ->
#ifndef MUT_BYREF_NO_REF
             s = s + REF_ONE;
#endif
             out = TN_SUBMIT
          fi;
          cas(cur, s, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       fi
    od; RMW_END
}

/* returns submit */
inline transition_to_notified_and_cancel(out) {
    RMW_BEGIN load(cur);
    do
    :: out = 0;                                /* reset: this may be a retry */
       s = cur;
       if
       :: (s & CANCELLED) != 0 || (s & COMPLETE) != 0 -> break
       :: else ->
          s = s | CANCELLED;
          if
          :: (s & RUNNING) != 0 || (s & NOTIFIED) != 0 -> s = s | NOTIFIED; out = 0
          :: else -> s = (s | NOTIFIED) + REF_ONE; out = 1
          fi;
          cas(cur, s, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       fi
    od; RMW_END
}

/* returns drop_waker; was: COMPLETE was set when the handle went */
inline transition_to_join_handle_dropped(out, was) {
    RMW_BEGIN load(cur);
    do
    :: s = cur & ~JOIN_INTEREST;
       was = ((cur & COMPLETE) != 0);
       if
       :: (cur & COMPLETE) == 0 -> s = s & ~JOIN_WAKER
#ifdef MUT_JOIN_DROP_CLEARS_WAKER
       :: else -> s = s & ~JOIN_WAKER
#else
       :: else -> skip
#endif
       fi;
       out = ((s & JOIN_WAKER) == 0);
       cas(cur, s, ok);
       if
       :: ok -> break
       :: else -> skip
       fi
    od; RMW_END
}

/* out: 0 done, 1 last, 2 refused (complete, and refuse_if_complete set) */
inline transition_to_join_handle_dropped_and_unref(out, refuse) {
    RMW_BEGIN load(cur);
    do
    :: refuse && (cur & COMPLETE) != 0 -> out = 2; break
    :: else ->
       s = cur & ~JOIN_INTEREST;
       assert(REFS(s) >= 1);
       s = s - REF_ONE;
       out = (REFS(s) == 0);
       cas(cur, s, ok);
       if
       :: ok -> break
       :: else -> skip
       fi
    od; RMW_END
}

/* set_join_waker / unset_join_waker: out = ok */
inline set_join_waker(out) {
    RMW_BEGIN load(cur);
    do
    :: if
       :: (cur & COMPLETE) != 0 -> out = 0; break
       :: else ->
          out = 1;
          cas(cur, cur | JOIN_WAKER, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       fi
    od; RMW_END
}

inline unset_join_waker(out) {
    RMW_BEGIN load(cur);
    do
    :: if
       :: (cur & COMPLETE) != 0 -> out = 0; break
       :: else ->
          out = 1;
          cas(cur, cur & ~JOIN_WAKER, ok);
          if
          :: ok -> break
          :: else -> skip
          fi
       fi
    od; RMW_END
}

/* ---- scheduler.cpp --------------------------------------------------------- */

/* wake_by_val / wake_by_ref from a thread that is not polling the task */
inline wake_by_val() {
    transition_to_notified_by_val(out);
    if
    :: out == TN_SUBMIT -> schedule()
    :: out == TN_DEALLOC -> dealloc()
    :: else -> skip
    fi
}

inline wake_by_ref() {
    transition_to_notified_by_ref(out);
    if
    :: out == TN_SUBMIT -> schedule()
    :: else -> skip
    fi
}

inline drop_ref() {
    ref_dec(last);
    if
    :: last -> dealloc()
    :: else -> skip
    fi
}

/* complete(t, runner_refs) */
inline complete(runner_refs) {
    /* The fast path: never linked in an owned list (it never suspended), no
     * join handle, no reference besides the runner's and the list's (an
     * acquire load): freed with no RMW, COMPLETE never published. Two steps,
     * as in the C++ (the load, then dealloc's plain writes). */
    fast = 0;
    if
    :: !linked && runner_refs == 1 ->
       atomic {
           assert(!freed);
#ifdef MUT_FAST_IGNORES_REFS
           fast = ((word & JOIN_INTEREST) == 0)
#else
           fast = (REFS(word) == 2 && (word & JOIN_INTEREST) == 0)
#endif
       };
       if
       :: fast ->
          cancel_timer();   /* the drop_output below */
          atomic {
              assert(!freed);
#ifndef MUT_FAST_IGNORES_REFS
              assert(REFS(word) == 2 && (word & JOIN_INTEREST) == 0);   /* nobody moved it */
#endif
              assert(completed == 0); completed++; notices++;         /* no handle: the completion reports */
              if
              :: stage == ST_FINISHED -> output_drops++; assert(output_drops == 1)
              :: else -> skip
              fi;
              stage = ST_DROPPED;
              assert(jw_field == 0 && jw_refs == 0);
              freed = 1
          }
       :: else -> skip
       fi
    :: else -> skip
    fi;
    if
    :: fast -> skip
    :: else ->
    /* owned_remove(): unlinked here (or never linked) -> release the list's
     * ref now; or pushed on the owner's done stack -> reap() releases it */
    if
    :: linked -> rel = runner_refs + 1
    :: !linked -> rel = runner_refs + 1
#ifndef NO_REAPER
    :: linked -> rel = runner_refs; reap_pending = 1
#endif
    fi;
    transition_to_complete(rel, kept, dl);
    if
    :: kept ->
       atomic {
           /* JOIN_WAKER set: the field is ours to read */
           assert((word & JOIN_WAKER) != 0 && jw_field != 0);
           assert(jw_field != TW || parker_alive);   /* the Parker's stack frame is live */
           join_woken = 1                      /* join_waker.wake_by_ref */
       };
       atomic { assert(!freed); cur = word & ~JOIN_WAKER; word = cur };  /* unset_join_waker_after_complete */
       if
       :: (cur & JOIN_INTEREST) == 0 ->
          atomic {
              /* the handle went away and left the waker to us */
              assert(jw_field != 0 && jw_refs > 0);
              jw_refs--; jw_field = 0
          }
       :: else -> skip
       fi;
       drop_ref()
    :: !kept && dl -> dealloc()
    :: else -> skip
    fi
    fi
}

inline cancel_task(runner_refs) {
    if
    :: stage == ST_FUTURE ->
       cancel_timer();
       stage = ST_DROPPED;
       future_drops++; assert(future_drops == 1)
    :: else -> skip
    fi;
    result = WEFT_ECANCELED;
    complete(runner_refs)
}

/* The future's poll: ready = 1 for Ready. Runs on the polling worker. */
inline poll_future(ready) {
    if
    :: !cloned ->
       /* the first poll hands out two clones of its waker */
       cloned = 1;
#ifdef BORROWED_TIMER
       timer_armed = 1;   /* registered with the task's own waker: no reference */
#endif
       ref_inc(); s_has = 1
#ifndef NO_FOREIGN
       ; ref_inc(); f_has = 1
#endif
    :: else -> skip
    fi;
#ifdef BORROWED_TIMER
    /* timer_poll: FIRING takes the lock (so waits for FIRED); FIRED is ready;
     * REGISTERED answers pending without the lock */
    atomic { !timer_firing -> tready = timer_fired };
#endif
    if
    :: ev || tready -> ready = 1
    :: else ->
       ready = 0;
       if
       :: yields == 0 ->
          yields++;
          if
          :: self_woken = 1                     /* wake_by_ref(t == t_current) */
          :: ref_inc();                         /* clone, then wake_by_val(t == t_current) */
             self_woken = 1;
             ref_dec(last); assert(!last)       /* "never the last: the runner holds one" */
          fi
       :: skip
       fi
    fi
}

proctype worker() {
    short cur, s;
    byte out, rel;
    bit ok, kept, dl, last, ready, self_woken, fast, tready;
end_idle:
    do
    :: runq?_ ->
       if
       :: resume_running ->
          /* re-queued while still RUNNING (it woke itself) */
          resume_running = 0;
          load(cur);
          if
          :: (cur & CANCELLED) != 0 -> cancel_task(1); goto done
          :: else -> goto poll
          fi
       :: else -> skip
       fi;
       transition_to_running(out);
       if
       :: out == TR_SUCCESS -> skip
       :: out == TR_CANCELLED -> cancel_task(1); goto done
       :: out == TR_FAILED -> goto done
       :: out == TR_FAILED_DEALLOC -> dealloc(); goto done
       fi;
poll:
       atomic {
           assert(polling == 0);                /* never two pollers */
           assert(!freed && (word & COMPLETE) == 0 && (word & RUNNING) != 0);
           polling = 1
       };
       self_woken = 0;
       poll_future(ready);
       polling = 0;
       if
       :: !ready ->
          if
          :: self_woken ->
             /* back of the queue, still RUNNING, holding the runner's ref */
             resume_running = 1;
             schedule()
          :: else ->
             linked = 1;   /* run_task links it in its worker's owned list */
             transition_to_idle(out);
             if
             :: out == TI_OK -> skip
             :: out == TI_OK_DEALLOC -> dealloc()
             :: out == TI_OK_NOTIFIED -> schedule()
             :: out == TI_CANCELLED -> cancel_task(1)
             fi
          fi
       :: else ->
          result = 0;
          stage = ST_FINISHED;
          complete(1)
       fi;
done:
       atomic { cur = 0; s = 0; out = 0; rel = 0; ok = 0; kept = 0; dl = 0; last = 0; ready = 0; self_woken = 0; fast = 0 }
    od
}

/* the future's event source */
proctype source() {
    short cur, s;
    byte out;
    bit ok, last;
end_s:
    s_has;
    if
    :: ev = 1; wake_by_val()
    :: ev = 1; wake_by_ref(); drop_ref()
    :: drop_ref()                      /* the event never comes */
    fi
}

/* a foreign thread holding a clone of the task's waker */
proctype foreign() {
    short cur, s;
    byte out;
    bit ok, last;
end_f:
    f_has;
    if
    :: wake_by_val()
    :: wake_by_ref(); drop_ref()
    :: drop_ref()
    fi
}

#ifdef BORROWED_TIMER
/* timer.cpp fire_locked for an entry that borrows its task's waker (timer.h
 * "Borrowed wakers"): takes the wheel's lock while the entry is REGISTERED,
 * makes a wake by reference's transition, marks the entry FIRED, unlocks,
 * then schedules the task if the transition said so. It holds no reference
 * of its own; the lock keeps the memory alive (cancel_timer waits for it).
 * -DMUT_TIMER_CLONES: it takes a reference instead (a clone from nothing)
 * and wakes by value after the lock, which breaks the scheduler's "no new
 * reference without holding one" (complete()'s fast path, join_free's solo
 * path). */
proctype timer() {
    short cur, s;
    byte out;
    bit ok, last;
    if
    :: atomic { timer_armed && !wheel_lock -> wheel_lock = 1 };
#ifdef MUT_TIMER_CLONES
       atomic { assert(!freed); ok = (REFS(word) >= 1); if :: ok -> word = word + REF_ONE :: else -> skip fi };
       atomic { timer_armed = 0; timer_fired = 1; wheel_lock = 0 };
       if
       :: ok -> wake_by_val()
       :: else -> skip
       fi
#else
#ifndef MUT_TIMER_NO_FIRING
       timer_firing = 1;
#endif
       transition_to_notified_by_ref(out);
       atomic { timer_armed = 0; timer_firing = 0; timer_fired = 1; wheel_lock = 0 };
       if
       :: out == TN_SUBMIT -> schedule()
       :: else -> skip
       fi
#endif
    :: skip   /* it never fires (cancelled first, or not yet due) */
    fi
}
#endif

/* owned_tasks.h reap(): the list owner drops the list's ref */
proctype reaper() {
    bit last;
end_r:
    reap_pending;
    drop_ref()
}

/* join_poll(t, waker w): out = 1 for READY */
inline join_poll(w, out) {
    load(cur);
    if
    :: (cur & COMPLETE) != 0 -> out = 1
    :: else ->
       out = 0;
       if
       :: (cur & JOIN_WAKER) != 0 ->
          if
          :: jw_field == w -> goto jp_done          /* will_wake: PENDING */
          :: else ->
             unset_join_waker(ok2);
             if
             :: !ok2 -> out = 1; goto jp_done       /* completed first */
             :: else -> skip
             fi
          fi
       :: else -> skip
       fi;
       /* JOIN_WAKER is clear: the field is the handle's to write */
       atomic {
           assert(!freed && (word & JOIN_WAKER) == 0);
           if
           :: jw_field != 0 -> assert(jw_refs > 0); jw_refs--
           :: else -> skip
           fi;
           jw_field = w; jw_refs++                 /* clone */
       };
       set_join_waker(ok2);
       if
       :: !ok2 ->
          atomic {
              assert((word & JOIN_WAKER) == 0);
              jw_refs--; jw_field = 0
          };
          out = 1
       :: else -> skip
       fi
    fi;
jp_done:
    skip
}

proctype joiner() {
    short cur, s;
    byte out, w = 1, polls = 0, last;
    bit ok, ok2, ready, hdone, was, fast, solo;
    /* join_abort */
    if
#ifndef NO_ABORT
    :: load(cur);
       if
       :: (cur & COMPLETE) == 0 ->
          transition_to_notified_and_cancel(out);
          if
          :: out -> schedule()
          :: else -> skip
          fi
       :: else -> skip
       fi;
       out = 0
#endif
    :: skip
    fi;
    cur = 0;
    /* await the handle (a task's join_poll, or a plain thread's join_wait),
     * or detach at once */
    if
#ifndef NO_JOIN_WAIT
    :: /* weft_join_wait (scheduler.cpp join_wait): optionally one
        * weft_join_poll with a task waker first (its waker may stay in the
        * field for join_free), then polls with the thread waker (3: a
        * Parker on this thread's stack, no refcount) and parks until
        * unparked, or times out; then retract_thread_waker before the stack
        * frame goes. */
       if
       :: join_poll(1, ready)
       :: skip
       fi;
       parker_alive = 1;
       do
       :: ready -> break
       :: else ->
          join_poll(TW, ready);
          if
          :: ready -> break
          :: !ready -> join_waiting = 1;
end_park:    join_woken; join_waiting = 0; join_woken = 0
          :: !ready -> break                   /* timed out */
          fi
       od;
       /* retract_thread_waker */
#ifndef MUT_NO_RETRACT
       unset_join_waker(ok2);
#ifndef MUT_RETRACT_NO_WAIT
       if
       :: !ok2 -> (word & JOIN_WAKER) == 0     /* completed: wait out the completer's wake */
       :: else -> skip
       fi;
#endif
       atomic {
           assert(!freed);
#ifndef MUT_RETRACT_ANY_WAKER
           if
           :: jw_field == TW -> assert(jw_refs > 0); jw_refs--; jw_field = 0
           :: else -> skip
           fi;
#else
           if
           :: jw_field != 0 -> jw_field = 0
           :: else -> skip
           fi;
#endif
           parker_alive = 0
       };
#else
       parker_alive = 0;
#endif
       if
       :: ready -> atomic {
              assert(!freed && (word & COMPLETE) != 0 && completed == 1);
              assert(result == WEFT_ECANCELED || stage == ST_FINISHED);
              taken++;
              assert(taken == 1)
          }
       :: else -> skip                         /* timed out: nothing taken */
       fi
#endif
    :: do
       :: join_poll(w, ready);
          polls++;
          if
          :: ready -> break
          :: else ->
             if
             :: polls == 1 -> w = 2               /* polled again before any wake, by another waker */
             :: join_waiting = 1;
end_wait:       join_woken; join_waiting = 0; join_woken = 0
             fi
          fi
       od;
       /* take the output (weft_join_take): alive, complete, once */
       atomic {
           assert(!freed && (word & COMPLETE) != 0 && completed == 1);
           assert(result == WEFT_ECANCELED || stage == ST_FINISHED);
           taken++;
           assert(taken == 1)
       }
    :: skip
    fi;
    /* join_free: a task complete at this load saw the handle at its
     * completion, so the handle takes the outcome (reports an unread
     * failure) here */
    load(cur);
    hdone = ((cur & COMPLETE) != 0);
    if
    :: hdone -> atomic { assert(!freed); notices++ }
    :: else -> skip
    fi;
    last = 0;
    /* The solo path: complete, and the handle's reference is the only one
     * (no join waker published or kept): it frees without an RMW. The
     * atomic step below only checks the claim it rests on, that nobody
     * changed the word since the load (and gives the handle's reference
     * back for dealloc's accounting); the code writes nothing. */
#ifdef MUT_SOLO_IGNORES_REFS
    solo = (hdone && (cur & JOIN_WAKER) == 0 && jw_field == 0);
#else
    solo = (hdone && REFS(cur) == 1 && (cur & JOIN_WAKER) == 0 && jw_field == 0);
#endif
    if
    :: solo ->
       atomic { assert(!freed); assert(word == cur); word = word - REF_ONE; solo_word = word };
       dealloc();
       goto joined
    :: else -> skip
    fi;
    fast = ((cur & JOIN_WAKER) == 0 && jw_field == 0);
    if
    :: fast ->
#ifdef MUT_UNREF_NO_REFUSE
       transition_to_join_handle_dropped_and_unref(last, 0);
#else
       transition_to_join_handle_dropped_and_unref(last, !hdone);
#endif
       if
       :: last == 1 -> dealloc()
       :: else -> skip
       fi
    :: else -> skip
    fi;
    if
    :: last == 2 || !fast ->
       transition_to_join_handle_dropped(out, was);
       if
       :: was && !hdone -> atomic { assert(!freed); notices++ }   /* completed in between */
       :: else -> skip
       fi;
       if
       :: out && jw_field != 0 ->
          atomic {
              assert((word & JOIN_WAKER) == 0);
              assert(jw_refs > 0); jw_refs--; jw_field = 0
          }
       :: else -> skip
       fi;
       drop_ref()
    :: else -> skip   /* the fast path released the handle */
    fi;
joined:
    skip
}

/* Runs when nothing else can move: the final state must be clean. */
proctype checker() {
    timeout ->
    d_step {
        assert(len(runq) == 0);
        if
        :: ev || timer_fired || (word & CANCELLED) != 0 ->
           /* the event came, or its timer fired, or the task was aborted:
            * it must have finished -- no wake and no abort was lost */
           assert(completed == 1);
           assert(!join_waiting);      /* the join handle was woken */
           assert(freed);              /* every ref dropped, memory released */
           assert(jw_refs == 0 && jw_field == 0);
           assert(future_drops + output_drops == 1)
        :: else ->
           /* pending for ever: legitimately alive (shutdown would reclaim it) */
           assert(completed == 0 && !freed)
        fi;
        /* the outcome went to exactly one reporter (none if never completed) */
        assert(notices == completed)
    }
}

init {
    atomic {
        /* task_spawn: TaskState::init_running(with_join = true) and
         * resume_running: queued as if it had woken itself (owned list +
         * runner's ref for the queue entry + handle). -DINIT_NOTIFIED: the
         * older TaskState::init, queued NOTIFIED. */
#ifdef INIT_NOTIFIED
        word = NOTIFIED | JOIN_INTEREST | 3 * REF_ONE;
#else
        word = RUNNING | JOIN_INTEREST | 3 * REF_ONE;
        resume_running = 1;
#endif
        stage = ST_FUTURE;
        runq!1;
        run worker();
        run worker();
        run source();
#ifndef NO_FOREIGN
        run foreign();
#endif
        run reaper();
#ifdef BORROWED_TIMER
        run timer();
#endif
        run joiner();
        run checker()
    }
}
