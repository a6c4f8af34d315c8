// kernel/intrusive_list.h — the intrusive doubly linked list every waiter
// queue and timer slot is built from.
//
// The link lives inside the element (a waiter on some task's stack or in a
// coroutine frame, a timer the caller allocated), so linking and unlinking
// allocate nothing and are O(1). An element can unlink itself without knowing
// which list it is on, which is what cancellation needs: a dropped future
// unlinks its node from whatever queue holds it.
//
// The list is circular around a sentinel inside the list object, so a list
// must not move while it has elements (copy and move are deleted). An unlinked
// node has prev == next == nullptr; is_linked() tests that. Nothing here is
// thread-safe: the owner of the list (a lock, a worker) serialises access.
//
//   struct Waiter : ListLink<> { ... };
//   IntrusiveList<Waiter> q;
//   q.push_back(&w);  ...  Waiter* first = q.pop_front();  ...  q.remove(&w);
//
// An element on two lists at once derives from two links with distinct tags:
//   struct Entry : ListLink<struct BySlot>, ListLink<struct ByOwner> {};
//   IntrusiveList<Entry, BySlot> slot;  IntrusiveList<Entry, ByOwner> owned;
#ifndef WEFT_KERNEL_INTRUSIVE_LIST_H
#define WEFT_KERNEL_INTRUSIVE_LIST_H

#include <stddef.h>

namespace weft::kernel {

template <class Tag = void>
struct ListLink {
    ListLink* prev = nullptr;
    ListLink* next = nullptr;

    bool is_linked() const noexcept { return next != nullptr; }

    // Unlinks this node from whatever list holds it (it must be linked).
    void unlink() noexcept {
        prev->next = next;
        next->prev = prev;
        prev = next = nullptr;
    }
};

template <class T, class Tag = void>
class IntrusiveList {
    using Link = ListLink<Tag>;

public:
    IntrusiveList() noexcept { head_.prev = head_.next = &head_; }
    IntrusiveList(const IntrusiveList&) = delete;
    IntrusiveList& operator=(const IntrusiveList&) = delete;

    bool empty() const noexcept { return head_.next == &head_; }

    void push_back(T* elem) noexcept { insert_before(&head_, link(elem)); }
    void push_front(T* elem) noexcept { insert_before(head_.next, link(elem)); }

    T* front() const noexcept { return empty() ? nullptr : elem(head_.next); }
    T* back() const noexcept { return empty() ? nullptr : elem(head_.prev); }

    T* pop_front() noexcept {
        if (empty()) return nullptr;
        Link* n = head_.next;
        n->unlink();
        return elem(n);
    }
    T* pop_back() noexcept {
        if (empty()) return nullptr;
        Link* n = head_.prev;
        n->unlink();
        return elem(n);
    }

    // Unlinks elem, which must be on this list.
    static void remove(T* elem) noexcept { link(elem)->unlink(); }
    static bool is_linked(const T* elem) noexcept { return static_cast<const Link*>(elem)->is_linked(); }

    // The element after elem, or nullptr at the end (for walking the list
    // while it is not being modified).
    T* next_of(const T* e) const noexcept {
        const Link* n = static_cast<const Link*>(e)->next;
        return n == &head_ ? nullptr : elem(const_cast<Link*>(n));
    }

    // Moves every element of other to the back of this list, in order: O(1).
    void splice_back(IntrusiveList& other) noexcept {
        if (other.empty()) return;
        Link* first = other.head_.next;
        Link* last = other.head_.prev;
        other.head_.prev = other.head_.next = &other.head_;
        first->prev = head_.prev;
        head_.prev->next = first;
        last->next = &head_;
        head_.prev = last;
    }

private:
    static Link* link(T* e) noexcept { return static_cast<Link*>(e); }
    static T* elem(Link* l) noexcept { return static_cast<T*>(l); }
    static void insert_before(Link* pos, Link* n) noexcept {
        n->next = pos;
        n->prev = pos->prev;
        pos->prev->next = n;
        pos->prev = n;
    }

    Link head_;
};

}  // namespace weft::kernel

#endif
