#!/bin/sh
# Build a CPython variant from Debian's own source package, inside a Debian userland (run by
# tools/targets.sh in the chroot). Debian ships no free-threaded interpreter (trixie and sid have
# no python3.1x-nogil package), so the free-threaded row builds one:
#
#   sh build_python.sh VERSION PREFIX [CONFIGURE_ARGS...]
#   e.g. sh build_python.sh 3.13 /opt/python3.13t --disable-gil
#
# Only Debian packages are used: the deb-src of the running suite and the build dependencies.
set -eu
VERSION=$1
PREFIX=$2
shift 2
export DEBIAN_FRONTEND=noninteractive
if ! grep -q '^deb-src' /etc/apt/sources.list; then
  sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >>/etc/apt/sources.list
fi
apt-get -o Acquire::Check-Valid-Until=false update -q
apt-get install -y -q --no-install-recommends dpkg-dev build-essential pkg-config \
  libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libexpat1-dev \
  libmpdec-dev xz-utils
mkdir -p /opt/build && cd /opt/build
rm -rf "python$VERSION"* && mkdir "python$VERSION-src" && cd "python$VERSION-src"
# The mirror can lag behind its own index (a listed source file answering 404): try each
# version the index lists, newest first.
for v in $(apt-cache showsrc "python$VERSION" | awk '/^Version:/ {print $2}' | sort -rV); do
  apt-get source -q --download-only "python$VERSION=$v" && break
done
tar xf python"$VERSION"_*.orig.tar.*z
cd Python-*/
# --with-ensurepip gives the interpreter its own pip, as a user's build would have.
./configure --prefix="$PREFIX" --with-ensurepip=install "$@" >configure.log 2>&1
make -j"$(nproc)" >make.log 2>&1
make install >install.log 2>&1
"$PREFIX/bin/python3" -VV
