#!/usr/bin/env bash
# Install NVIDIA's perf_analyzer (PyPI's perf-analyzer wheel) as VENV/bin/perf_analyzer.
#
#   bash benchmarks/install_perf_analyzer.sh [VENV]        (`make install` runs it)
#
# The wheels (2.58 to 2.60) are built for glibc 2.38 (manylinux_2_38), so on an older C
# library, such as Debian 12's 2.36, `pip install perf-analyzer` quietly takes a 0.1.0
# placeholder without the binary. There, this downloads the real wheel for its platform,
# and Debian 13's C and C++ runtime (libc6, libstdc++6, libgcc-s1) with apt-get, into
# VENV/perf-analyzer/ only: VENV/bin/perf_analyzer runs the binary under that runtime's own
# loader, and the system's libraries are left as they are. Where the C library is new
# enough, pip installs the wheel as usual.
set -euo pipefail

VENV=${1:-.venv}
VERSION=2.60.0
DIR="$(cd "$VENV" && pwd)/perf-analyzer"
BIN="$(cd "$VENV" && pwd)/bin"
glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)

if [ "$(printf '%s\n' 2.38 "$glibc" | sort -V | head -1)" = 2.38 ]; then
  "$BIN/pip" install --quiet "perf-analyzer==$VERSION"
  exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR/wheel" "$DIR/runtime" "$DIR/apt/parts" "$DIR/apt/lists/partial" "$DIR/apt/archives/partial"
"$BIN/pip" download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_38_x86_64 --dest "$DIR/wheel" "perf-analyzer==$VERSION"
"$BIN/python" -m zipfile -e "$DIR"/wheel/perf_analyzer-*.whl "$DIR/wheel"

# Debian 13 (trixie) as a package source of its own: its lists and downloads stay in DIR.
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$DIR/apt/sources.list"
touch "$DIR/apt/status"
apt=(apt-get -qq
  -o "Dir::Etc::SourceList=$DIR/apt/sources.list" -o "Dir::Etc::SourceParts=$DIR/apt/parts"
  -o "Dir::State=$DIR/apt" -o "Dir::State::status=$DIR/apt/status"
  -o "Dir::Cache=$DIR/apt" -o "APT::Sandbox::User=$(id -un)" -o "Debug::NoLocking=1")
"${apt[@]}" update
(cd "$DIR/apt/archives" && "${apt[@]}" download libc6 libstdc++6 libgcc-s1)
for package in "$DIR"/apt/archives/*.deb; do
  dpkg-deb -x "$package" "$DIR/runtime"
done
rm -rf "$DIR/apt"

lib="$DIR/runtime/usr/lib/x86_64-linux-gnu"
binary="$DIR/wheel/perf_analyzer/bin/perf_analyzer"
chmod +x "$binary"
cat > "$BIN/perf_analyzer" <<EOF
#!/bin/sh
# perf_analyzer $VERSION under Debian 13's C runtime (benchmarks/install_perf_analyzer.sh).
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$binary" "\$@"
EOF
chmod +x "$BIN/perf_analyzer"
"$BIN/perf_analyzer" --version
