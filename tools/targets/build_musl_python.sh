#!/bin/sh
# Build a musl-linked CPython inside a Debian userland, for the musl (Alpine-like) row of
# tools/targets.sh. No Alpine mirror is reachable, so everything comes from Debian: musl-tools
# (musl-gcc), and the source packages of zlib, OpenSSL, libffi and CPython, built into one
# prefix. The interpreter's ELF interpreter is musl's loader, so pip sees a musllinux platform and
# installs PyPI's musllinux wheels.
#
#   sh build_musl_python.sh VERSION PREFIX      # e.g. 3.13 /opt/python3.13-musl
set -eu
VERSION=$1
PREFIX=$2
DEPS=/opt/musl-deps
export DEBIAN_FRONTEND=noninteractive
if ! grep -q '^deb-src' /etc/apt/sources.list; then
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >>/etc/apt/sources.list
fi
apt-get -o Acquire::Check-Valid-Until=false update -q
apt-get install -y -q --no-install-recommends dpkg-dev build-essential musl-tools musl-dev \
  linux-libc-dev perl xz-utils autoconf automake libtool libltdl-dev
# musl's loader searches only this list when the file exists (not glibc's ld.so.conf dirs, so
# glibc programs of the userland never see these libraries).
printf '%s\n' "$DEPS/lib" /lib /usr/local/lib /usr/lib >"/etc/ld-musl-$(uname -m).path"
# Alpine names its libc libc.musl-<arch>.so.1; musllinux wheels link that name.
arch=$(uname -m)
ln -sf "/usr/lib/$arch-linux-musl/libc.so" "/lib/libc.musl-$arch.so.1"
mkdir -p /opt/build/musl && cd /opt/build/musl
src() {  # fetch and unpack the upstream tarball of a Debian source package
  rm -rf "$1" && mkdir "$1" && cd "$1"
  # The mirror can lag behind its own index (listed files answering 404): try each listed
  # version, newest first, until its upstream tarball arrived (the Debian patches are not used).
  for v in $(apt-cache showsrc "$1" | awk '/^Version:/ {print $2}' | sort -rV); do
    apt-get source -q --download-only "$1=$v" >/dev/null 2>&1 || true
    ls "$1"_*.orig.tar.* >/dev/null 2>&1 && break
  done
  tar xf "$(ls "$1"_*.orig.tar.* | grep -v '\.asc$' | head -n 1)"
  cd "$(find . -mindepth 1 -maxdepth 1 -type d | head -n 1)"
}
# musl-gcc sees only musl's headers; OpenSSL and CPython include a few kernel headers.
KHDR=/opt/build/musl/khdr
mkdir -p "$KHDR"
for d in linux asm-generic mtd; do ln -sfn "/usr/include/$d" "$KHDR/$d"; done
ln -sfn "/usr/include/$arch-linux-gnu/asm" "$KHDR/asm"
# CPython's configure compares the compiler's --print-multiarch (gcc's: x86_64-linux-gnu) with
# the triplet it derives from the C library (x86_64-linux-musl) and stops on a mismatch; a
# wrapper that answers nothing to --print-multiarch, as a native musl compiler does.
cat >/opt/build/musl/musl-cc <<EOF
#!/bin/sh
[ "\$1" = --print-multiarch ] && exit 0
exec musl-gcc -I$KHDR "\$@"
EOF
chmod +x /opt/build/musl/musl-cc
export CC=/opt/build/musl/musl-cc

# zlib: static for CPython, and shared because PyPI's musllinux av wheel links libz.so.1 from the
# system (every Alpine has it: apk-tools needs it).
[ -e "$DEPS/lib/libz.so.1" ] || (src zlib && CFLAGS=-fPIC ./configure --prefix="$DEPS" >/dev/null && make -j"$(nproc)" >/dev/null &&
  make install >/dev/null)
[ -e "$DEPS/lib/libssl.a" ] || (src openssl && ./Configure "linux-$arch" no-shared no-tests no-afalgeng no-async no-docs \
  --prefix="$DEPS" --libdir=lib >/dev/null && make -j"$(nproc)" >make.log 2>&1 &&
  make install_sw >/dev/null)
# libffi for ctypes (ifaddr, under aioice, and lkproto.testing use it), static and
# position-independent like zlib. Debian's libffi tarball has no configure script (autogen.sh
# makes it), and it must be built out of tree for the musl host triplet.
[ -e "$DEPS/lib/libffi.a" ] || (src libffi && { [ -x configure ] || ./autogen.sh >/dev/null; } &&
  mkdir -p build && cd build &&
  ../configure --prefix="$DEPS" --libdir="$DEPS/lib" --host="$arch-pc-linux-musl" \
    --disable-shared --with-pic --disable-docs --disable-multi-os-directory >/dev/null &&
  make -j"$(nproc)" >/dev/null && make install >/dev/null)
(src "python$VERSION" &&
  ./configure --prefix="$PREFIX" --with-ensurepip=install --with-openssl="$DEPS" \
    CPPFLAGS="-I$DEPS/include" LDFLAGS="-L$DEPS/lib" LIBFFI_CFLAGS="-I$DEPS/include" \
    LIBFFI_LIBS="-L$DEPS/lib -lffi" >configure.log 2>&1 &&
  make -j"$(nproc)" >make.log 2>&1 && make install >install.log 2>&1)
"$PREFIX/bin/python$VERSION" -c 'import ctypes, ssl, sys, zlib; print(sys.version, ssl.OPENSSL_VERSION)'
