# cmake/toolchain-aarch64.cmake — cross-build weft for aarch64 Linux (Debian's
# g++-aarch64-linux-gnu) and run its tests under qemu-user. Used by .ci/cross:
#   cmake -S . -B build-cross-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
# ctest then runs every test binary through CMAKE_CROSSCOMPILING_EMULATOR
# (qemu-aarch64 with the target's libc from /usr/aarch64-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(WEFT_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${WEFT_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${WEFT_CROSS_TRIPLE}-g++)

# Libraries, headers and CMake packages come from the target's sysroot, or
# from the target's multiarch directories of the host (/usr/lib/<triple>:
# Debian's foreign-architecture packages, e.g. librapidcheck-dev:<arch>),
# never from the host's own (/usr/lib/x86_64-linux-gnu). Programs (python3,
# sh) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${WEFT_CROSS_TRIPLE} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${WEFT_CROSS_TRIPLE})
