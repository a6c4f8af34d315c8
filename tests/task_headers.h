// tests/task_headers.h — bare kernel task headers for the queue tests
// (test_local_queue, test_inject_queue): the queues only store pointers and
// use queue_next; the tests use a header's index to count deliveries.
#ifndef WEFT_TESTS_TASK_HEADERS_H
#define WEFT_TESTS_TASK_HEADERS_H

#include <cstddef>
#include <memory>

#include "../kernel/task.h"

struct Tasks {
    explicit Tasks(size_t n) : v(new weft::kernel::TaskHeader[n]()), n(n) {}
    weft::kernel::TaskHeader* operator[](size_t i) { return &v[i]; }
    size_t index(const weft::kernel::TaskHeader* t) const { return (size_t)(t - v.get()); }
    std::unique_ptr<weft::kernel::TaskHeader[]> v;
    size_t n;
};

#endif
