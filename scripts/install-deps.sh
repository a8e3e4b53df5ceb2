#!/bin/sh
# Installs the Debian packages Tessera needs to build and test. No-op when all are present.
set -e
PKGS="cmake make gcc g++ clang pkg-config libpng-dev libjpeg62-turbo-dev libsndfile1-dev \
libsoxr-dev libfftw3-dev libcjson-dev libpcre2-dev libutf8proc-dev libopenblas-dev \
libmicrohttpd-dev libcurl4-openssl-dev curl"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
