// kernel/timer_wheel.h — a hierarchical timer wheel over intrusive entries.
//
// Time is counted in ticks of 1 ms from the runtime's start. Six levels of 64
// slots: level k's slots are 64^k ticks wide, so level 0 spans 64 ms, level 1
// 4.1 s, level 2 4.4 min, level 3 4.7 h, level 4 12.4 days and level 5 2.2
// years. An entry whose deadline lies outside the current block of 2^36
// ticks waits on an overflow list and is moved into the levels when `elapsed`
// reaches its block.
//
// An entry lives at the level of the highest 6-bit digit in which its
// deadline `when` differs from the wheel's `elapsed` tick, in the slot given
// by its own digit there. So every entry of level k expires before any entry
// of level k+1, and when a level-k slot's time comes its entries are
// re-inserted: they fall to lower levels (each entry moves at most once per
// level), and those whose tick has come are expired. Each level keeps a
// 64-bit occupancy bitmap, so finding the next non-empty slot is a rotate and
// a count-trailing-zeros.
//
// Each slot is LANES lists, filled in turn, only so that advance() can walk
// them at once (see there); together they are the slot (an entry is removed
// from whichever holds it: the lists are circular and need no owner).
//
// Insert, remove: O(1), no allocation (the entry is the caller's memory).
// Expiring: amortised O(1) per entry plus O(levels) per advance.
// Never early: an entry expires only once `now` (in ticks, rounded down) has
// reached `when` (the caller rounds deadlines up to a tick).
//
// Not thread-safe: the owner (kernel/timer.h) holds a lock around every call.
// Tests: tests/test_timer_wheel.cpp.
#ifndef WEFT_KERNEL_TIMER_WHEEL_H
#define WEFT_KERNEL_TIMER_WHEEL_H

#include <stdint.h>

#include "intrusive_list.h"

namespace weft::kernel {

// The part of a timer the wheel knows. kernel/timer.h extends it.
struct WheelEntry : ListLink<> {
    uint64_t when = 0;    // deadline tick
    uint8_t level = 0;    // where it is: 0..LEVELS-1, or OVERFLOW / EXPIRED
    uint8_t slot = 0;
};

class TimerWheel {
public:
    static constexpr uint32_t LEVELS = 6;
    static constexpr uint32_t SLOT_BITS = 6;
    static constexpr uint32_t SLOTS = 1u << SLOT_BITS;
    // Ticks the levels span: one aligned block of 2^36 ms (2.2 years).
    static constexpr uint64_t SPAN = uint64_t(1) << (SLOT_BITS * LEVELS);
    static constexpr uint64_t NONE = ~uint64_t(0);
    static constexpr uint8_t OVERFLOW = 0xfe;  // on the overflow list
    static constexpr uint8_t EXPIRED = 0xff;   // handed out by advance()
    static constexpr uint32_t LANES = 2;       // lists per slot (see advance)

    using List = IntrusiveList<WheelEntry>;

    uint64_t elapsed() const { return elapsed_; }
    bool empty() const { return count_ == 0; }
    uint64_t count() const { return count_; }

    // An empty wheel may jump forward to now at once (nothing to expire on
    // the way); inserting relative to a fresh `elapsed` keeps entries low.
    void catch_up_if_empty(uint64_t now) {
        if (count_ == 0 && now > elapsed_) elapsed_ = now;
    }

    // Inserts e, whose e->when must be > elapsed() (a deadline already
    // reached is the caller's to expire at once). Returns the tick at which
    // e's slot expires: next_expiration() is now the smaller of this and its
    // value before the insert (so callers can keep a published copy current
    // without recomputing it).
    uint64_t insert(WheelEntry* e) {
        count_++;
        place(e);
        if (e->level == OVERFLOW) return e->when & ~(SPAN - 1);
        return slot_deadline(e->level, e->slot);
    }

    // Removes e, which must be in this wheel (not expired).
    void remove(WheelEntry* e) {
        count_--;
        if (e->level == OVERFLOW) {
            overflow_.remove(e);
            if (overflow_.empty()) overflow_min_ = NONE;
            return;
        }
        List::remove(e);
        if (slot_empty(e->level, e->slot)) occupied_[e->level] &= ~(uint64_t(1) << e->slot);
    }

    // The earliest tick at which advance() could expire something or must
    // move entries, or NONE when the wheel is empty.
    uint64_t next_expiration() const {
        Expiration x = next();
        return x.level < 0 ? NONE : x.deadline;
    }

    // Advances the wheel to tick now, moving every entry with when <= now to
    // the back of `expired` (marked EXPIRED, no longer counted). Entries
    // still in the future stay.
    void advance(uint64_t now, List& expired) {
        for (;;) {
            Expiration x = next();
            if (x.level < 0 || x.deadline > now) break;
            elapsed_ = x.deadline;
            List due[LANES];
            if (x.level == OVERFLOW_LEVEL) {
                due[0].splice_back(overflow_);
                overflow_min_ = NONE;
            } else {
                for (uint32_t l = 0; l < LANES; l++) due[l].splice_back(slots_[x.level][x.slot][l]);
                occupied_[x.level] &= ~(uint64_t(1) << x.slot);
            }
            // Taken from both ends of every lane in turn: the next entry at
            // an end is known only once the previous one there is read, and
            // entries are usually cold (registered up to a level's span ago),
            // so one end at a time is a chain of dependent cache misses; the
            // 2 x LANES ends are as many chains, whose misses overlap.
            for (uint32_t end = 0;; end++) {
                List& d = due[(end / 2) % LANES];
                WheelEntry* e = end % 2 ? d.pop_back() : d.pop_front();
                if (!e) {
                    bool left = false;
                    for (uint32_t l = 0; l < LANES; l++) left |= !due[l].empty();
                    if (!left) break;
                    continue;
                }
                if (e->when <= elapsed_) {
                    e->level = EXPIRED;
                    count_--;
                    expired.push_back(e);
                } else {
                    place(e);  // a lower level now (or overflow again)
                }
            }
        }
        // Nothing is due up to now: every entry's slot still lies ahead.
        if (now > elapsed_) elapsed_ = now;
    }

private:
    static constexpr int OVERFLOW_LEVEL = 100;
    struct Expiration {
        int level;  // -1: none
        uint32_t slot;
        uint64_t deadline;
    };

    void place(WheelEntry* e) {
        uint64_t when = e->when;
        if ((elapsed_ ^ when) >> (SLOT_BITS * LEVELS)) {
            // Not in elapsed's block of SPAN ticks: out of the levels' reach.
            // Moved in when elapsed reaches the start of its block.
            e->level = OVERFLOW;
            overflow_.push_back(e);
            if (when < overflow_min_) overflow_min_ = when;
            return;
        }
        // The highest 6-bit digit in which when and elapsed differ (| (SLOTS-1):
        // a difference in digit 0 only, or none, is level 0).
        uint64_t masked = (elapsed_ ^ when) | (SLOTS - 1);
        uint32_t significant = 63 - (uint32_t)__builtin_clzll(masked);
        uint32_t level = significant / SLOT_BITS;
        uint32_t slot = (uint32_t)(when >> (level * SLOT_BITS)) & (SLOTS - 1);
        e->level = (uint8_t)level;
        e->slot = (uint8_t)slot;
        slots_[level][slot][lane_next_++ % LANES].push_back(e);
        occupied_[level] |= uint64_t(1) << slot;
    }

    // The tick at which slot `slot` of `level` expires. An occupied slot is
    // always ahead of elapsed (an entry sits in the slot of its own digit,
    // which is above elapsed's digit at its level); a smaller slot number
    // than elapsed's means the next rotation.
    uint64_t slot_deadline(uint32_t level, uint32_t slot) const {
        uint32_t shift = level * SLOT_BITS;
        uint32_t now_slot = (uint32_t)(elapsed_ >> shift) & (SLOTS - 1);
        uint64_t slot_range = uint64_t(1) << shift;
        uint64_t level_range = slot_range << SLOT_BITS;
        uint64_t deadline = (elapsed_ & ~(level_range - 1)) + slot * slot_range;
        if (slot < now_slot) deadline += level_range;
        return deadline;
    }

    bool slot_empty(uint32_t level, uint32_t slot) const {
        for (uint32_t l = 0; l < LANES; l++)
            if (!slots_[level][slot][l].empty()) return false;
        return true;
    }

    Expiration next() const {
        // Lower levels always expire first (see the header comment).
        for (uint32_t level = 0; level < LEVELS; level++) {
            uint64_t occ = occupied_[level];
            if (!occ) continue;
            uint32_t now_slot = (uint32_t)(elapsed_ >> (level * SLOT_BITS)) & (SLOTS - 1);
            uint64_t rotated = now_slot ? (occ >> now_slot) | (occ << (SLOTS - now_slot)) : occ;
            uint32_t slot = (now_slot + (uint32_t)__builtin_ctzll(rotated)) & (SLOTS - 1);
            return {(int)level, slot, slot_deadline(level, slot)};
        }
        if (!overflow_.empty()) {
            // The start of the earliest overflow entry's block of SPAN ticks:
            // after every entry of the levels (they all lie in elapsed's
            // block) and after elapsed.
            return {OVERFLOW_LEVEL, 0, overflow_min_ & ~(SPAN - 1)};
        }
        return {-1, 0, NONE};
    }

    uint64_t elapsed_ = 0;
    uint64_t count_ = 0;
    uint64_t occupied_[LEVELS] = {};
    uint32_t lane_next_ = 0;  // inserts alternate between the lanes
    List slots_[LEVELS][SLOTS][LANES];
    List overflow_;
    uint64_t overflow_min_ = NONE;  // a lower bound of the overflow entries' `when`
};

}  // namespace weft::kernel

#endif
