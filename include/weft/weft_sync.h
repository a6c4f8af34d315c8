/* weft_sync.h — part of the C ABI; include <weft/weft.h>, which includes this. */
#ifndef WEFT_WEFT_SYNC_H
#define WEFT_WEFT_SYNC_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
