// arch/padding.h — keep independently-written hot fields on their own cache
// lines (WEFT_CACHE_LINE, from the ISA header).
#ifndef WEFT_ARCH_PADDING_H
#define WEFT_ARCH_PADDING_H

#include "arch.h"

namespace weft::arch {

inline constexpr unsigned long cache_line = WEFT_CACHE_LINE;

// A T alone on its cache line(s): aligned to the line and padded to a whole
// number of lines, so nothing else written by another thread shares them.
template <class T>
struct alignas(WEFT_CACHE_LINE) CachePadded {
    T value;
    T* operator->() { return &value; }
    const T* operator->() const { return &value; }
    T& operator*() { return value; }
};

static_assert(sizeof(CachePadded<char>) == WEFT_CACHE_LINE, "padding is one line");
static_assert(alignof(CachePadded<char>) == WEFT_CACHE_LINE, "padding is line-aligned");

}  // namespace weft::arch

#endif
