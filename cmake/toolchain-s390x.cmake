# cmake/toolchain-s390x.cmake — cross-build weft for s390x Linux (Debian's
# g++-s390x-linux-gnu) and run its tests under qemu-user. Used by .ci/cross:
#   cmake -S . -B build-cross-s390x -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-s390x.cmake
# ctest then runs every test binary through CMAKE_CROSSCOMPILING_EMULATOR
# (qemu-s390x with the target's libc from /usr/s390x-linux-gnu).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(WEFT_CROSS_TRIPLE s390x-linux-gnu)

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

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-s390x -L /usr/${WEFT_CROSS_TRIPLE})
