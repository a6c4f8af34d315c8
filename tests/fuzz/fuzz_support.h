// tests/fuzz/fuzz_support.h — what every fuzz target shares: CHECK /
// CHECK_IN (abort with the target's name and the line on a violated
// contract) and Reader (decodes the input; reads past its end give 0).
// Define FUZZ_NAME (a string literal) before including it.
#ifndef WEFT_TESTS_FUZZ_SUPPORT_H
#define WEFT_TESTS_FUZZ_SUPPORT_H

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz_support.h"
#endif

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, FUZZ_NAME ": contract violation at line %d: %s\n", __LINE__, #c);     \
            abort();                                                                              \
        }                                                                                         \
    } while (0)
#define CHECK_IN(r, ...)                                                                          \
    do {                                                                                          \
        int r_ = (r);                                                                             \
        const int ok_[] = {__VA_ARGS__};                                                          \
        bool f_ = false;                                                                          \
        for (int o_ : ok_) f_ |= (o_ == r_);                                                      \
        if (!f_) {                                                                                \
            fprintf(stderr, FUZZ_NAME ": line %d: %s returned %d, allowed: %s\n", __LINE__, #r, r_, \
                    #__VA_ARGS__);                                                                \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

namespace fuzz {

struct Reader {
    const uint8_t* p;
    size_t n;
    bool empty() const { return n == 0; }
    uint8_t u8() {
        if (!n) return 0;
        n--;
        return *p++;
    }
    uint64_t u64(unsigned bytes) {
        uint64_t v = 0;
        for (unsigned i = 0; i < bytes; i++) v |= uint64_t(u8()) << (8 * i);
        return v;
    }
};

}  // namespace fuzz

#endif
