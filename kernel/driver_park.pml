/* kernel/driver_park.pml -- SPIN model of the sleeping flag that elides the
 * eventfd write when a worker sleeps in its I/O driver: kernel/parker.h
 * (Parker::park_in, Parker::unpark, state PARKED_DRIVER) and kernel/io.cpp
 * (io_park: post the eventfd read, park_in around io_uring_enter; reaping the
 * read's completion clears wake_posted).
 *
 * WHAT IT MODELS
 *   One sleeper (the worker) parks in its driver NPARK times; each time it
 *   waits until the kernel would end io_uring_enter: a completion is posted
 *   (here: the eventfd read completes, which needs a read posted and a
 *   nonzero eventfd counter). Between parks it reaps: a completed read clears
 *   `posted` and consumes the counter (the read returns it). NWAKE wakers each
 *   call unpark() once, at any moment. The protocol's claim: an unpark is
 *   never lost -- every unpark either makes the sleeper's next park_in return
 *   at once (it saw NOTIFIED), or ends the wait in progress (the eventfd
 *   write). And a waker writes the eventfd only when the sleeper is in state
 *   PARKED_DRIVER (the flag that saves the syscall for an awake worker).
 *
 *   Every access to the Parker word is one atomic step (they are RMWs or
 *   seq_cst CASes on one location: a single total order, which SC
 *   interleaving models exactly). The kernel's wait is modelled as "block
 *   until a completion is available", with no timeout and no spurious
 *   wake-up (the worst case for a lost wake-up).
 *
 * PROPERTY
 *   No lost wake-up: a state where the sleeper blocks in the wait after
 *   every waker has finished, with a wake owed to it, is an invalid end
 *   state (the safety run reports it). A wake is owed when some unpark
 *   happened after the sleeper's last observation of NOTIFIED. (That the
 *   eventfd is written only for a PARKED_DRIVER sleeper is the code's
 *   structure, not a property to check.)
 *
 * COMMAND (tests/check_models.sh)
 *   spin -a kernel/driver_park.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan
 *
 * RESULTS (spin 6.5.2): NPARK=3 NWAKE=2: 617 states; NPARK=4 NWAKE=3: 4,832
 *   states; errors: 0. Each mutation below: an invalid end state (the
 *   sleeper blocked in io_uring_enter with a wake owed), depth 34-40.
 *
 * MUTATIONS (tests/check_models.sh --mutations; each must fail)
 *   -DMUT_WAKE_ONLY_PARKED   unpark() ignores PARKED_DRIVER (writes nothing)
 *   -DMUT_NO_REPOST          io_park does not post the eventfd read again
 *                            after reaping it
 *   -DMUT_CAS_BEFORE_CHECK   park_in sets PARKED_DRIVER with a plain store
 *                            instead of a CAS from EMPTY (an earlier
 *                            NOTIFIED is overwritten)
 */

#ifndef NPARK
#define NPARK 3
#endif
#ifndef NWAKE
#define NWAKE 2
#endif

#define EMPTY 0
#define PARKED 1
#define NOTIFIED 2
#define PARKED_DRIVER 3

byte state = EMPTY;   /* Parker::state_ */
byte counter = 0;     /* the eventfd's counter */
bit posted = 0;       /* an eventfd read is in the ring (Driver::wake_posted) */
byte owed = 0;        /* unparks not yet observed by the sleeper */
byte wakers_done = 0;

proctype waker() {
    byte prev;
    atomic {
        prev = state;
        state = NOTIFIED;
        owed++
    };
#ifdef MUT_WAKE_ONLY_PARKED
    skip;
#else
    if
    :: prev == PARKED_DRIVER ->
       /* eventfd_signal: the counter goes up; a posted read completes */
       atomic { counter++ }
    :: else -> skip
    fi;
#endif
    atomic { wakers_done++ }
}

proctype sleeper() {
    byte i = 0;
    bit notified;
    do
    :: i < NPARK ->
       /* io_park: post the eventfd read if it is not in the ring */
#ifdef MUT_NO_REPOST
       if
       :: i == 0 -> posted = 1
       :: else -> skip
       fi;
#else
       posted = 1;
#endif
       /* park_in */
       notified = 0;
       atomic {
           if
           :: state == NOTIFIED -> state = EMPTY; notified = 1; owed = 0
           :: else -> skip
           fi
       };
       if
       :: notified -> skip
       :: else ->
#ifdef MUT_CAS_BEFORE_CHECK
          atomic { state = PARKED_DRIVER };
#else
          atomic {
              if
              :: state == EMPTY -> state = PARKED_DRIVER
              :: else -> state = EMPTY; notified = 1; owed = 0   /* NOTIFIED raced in */
              fi
          };
#endif
          if
          :: notified -> skip
          :: else ->
             /* io_uring_enter(wait 1): returns once the posted read can
              * complete (the counter is nonzero). Blocks for ever otherwise. */
             /* When no wake is owed, let the wait end once every waker is
              * done (a timer or another completion would end it for real);
              * with a wake owed and no completion coming it blocks for ever:
              * an invalid end state, the lost wake-up. */
             atomic { (posted == 1 && counter > 0) || (wakers_done == NWAKE && owed == 0) };
             atomic {
                 if
                 :: state == NOTIFIED -> owed = 0
                 :: else -> skip
                 fi;
                 state = EMPTY
             }
          fi
       fi;
       /* reap: a completed eventfd read returns the counter and leaves the ring */
       atomic {
           if
           :: posted == 1 && counter > 0 -> counter = 0; posted = 0
           :: else -> skip
           fi
       };
       i++
    :: else -> break
    od
    /* A wake still owed here came after the last park's observation: the
     * next park would see NOTIFIED. */
}

init {
    byte k;
    atomic {
        run sleeper();
        k = 0;
        do
        :: k < NWAKE -> run waker(); k++
        :: else -> break
        od
    }
}
