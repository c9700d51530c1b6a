#!/bin/sh
# Installs the library into a staging prefix and builds a program outside the source tree
# against it with pkg-config, statically and dynamically, then runs both.
set -eu
build=$1
stage=$build/install-stage
rm -rf "$stage" "$build/consumer"
cmake --install "$build" --prefix "$stage" >/dev/null
mkdir -p "$build/consumer"
src=$(dirname "$0")/consumer.c
export PKG_CONFIG_PATH="$stage/lib/pkgconfig:$stage/lib/x86_64-linux-gnu/pkgconfig:$stage/lib64/pkgconfig"
CC=${CC:-cc}
# Shared library
$CC -Wall -Werror -o "$build/consumer/shared" "$src" $(pkg-config --define-prefix --cflags --libs switchboard)
LD_LIBRARY_PATH="$(pkg-config --define-prefix --variable=libdir switchboard)" "$build/consumer/shared"
# Static library
$CC -Wall -Werror -o "$build/consumer/static" "$src" $(pkg-config --define-prefix --cflags switchboard) \
   "$(pkg-config --define-prefix --variable=libdir switchboard)/libswitchboard.a" $(pkg-config --define-prefix --libs --static switchboard | sed 's/-lswitchboard//')
"$build/consumer/static"
echo "install_consumer: ok"
