// weft/sync.hpp — part of the C++ API; include <weft/weft.hpp>, which includes this.
#ifndef WEFT_SYNC_HPP
#define WEFT_SYNC_HPP

#include "weft.hpp"

namespace weft {

}  // namespace weft

#endif
