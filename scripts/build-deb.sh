#!/usr/bin/env bash
# Builds pimesh_<version>_<arch>.deb from a release binary (docs/pi.md).
#   scripts/build-deb.sh ARCH BIN OUT_DIR
# The man page and completions come from .build/man and .build/completions (`make cli-docs`,
# the same for every architecture: they are made from the commands' definitions). Depends: is
# derived from the binary (dpkg-shlibdeps on its NEEDED libraries), plus the one library it
# loads on demand (libcurl), named below.
set -euo pipefail
arch=${1:?usage: build-deb.sh ARCH BIN OUT_DIR}
bin=${2:?usage: build-deb.sh ARCH BIN OUT_DIR}
out=${3:?usage: build-deb.sh ARCH BIN OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
man_dir=${MAN_DIR:-$here/.build/man}
completions_dir=${COMPLETIONS_DIR:-$here/.build/completions}

fail() { echo "build-deb: $*" >&2; exit 1; }
case "$arch" in amd64 | arm64) ;; *) fail "ARCH is amd64 or arm64, not \"$arch\"" ;; esac
[ -f "$bin" ] || fail "no binary at $bin (make release, or BIN=path)"
bin=$(realpath "$bin")
# readelf reads every architecture's headers; the host's objdump knows only its own.
machine=$(readelf -h "$bin" 2>/dev/null | sed -n 's/^ *Machine: *//p')
case "$arch:$machine" in
  "amd64:Advanced Micro Devices X86-64" | arm64:AArch64) ;;
  *) fail "$bin is built for \"$machine\", not for $arch" ;;
esac
for file in "$man_dir/pimesh.1" "$completions_dir/pimesh.bash" "$completions_dir/_pimesh" "$completions_dir/pimesh.fish"; do
  [ -f "$file" ] || fail "missing $file (make cli-docs)"
done
version=$(sed -n 's/.*public static let current = "\(.*\)".*/\1/p' "$here/Sources/PimeshCore/Version/PimeshVersion.swift")
[ -n "$version" ] || fail "no version in Sources/PimeshCore/Version/PimeshVersion.swift"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" \
  "$root/usr/lib/tmpfiles.d" "$root/usr/lib/udev/rules.d" "$root/etc/pimesh/agents.d" "$root/usr/share/doc/pimesh" \
  "$root/usr/share/man/man1" "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
debian=$here/pi/debian
install -m 0755 "$bin" "$root/usr/bin/pimesh"
install -m 0644 "$here/pi/pimesh.service" "$root/usr/lib/systemd/system/pimesh.service"
install -m 0644 "$here/pi/pimesh-rollback.service" "$root/usr/lib/systemd/system/pimesh-rollback.service"
install -m 0644 "$debian/pimesh.sysusers" "$root/usr/lib/sysusers.d/pimesh.conf"
install -m 0644 "$debian/pimesh.tmpfiles" "$root/usr/lib/tmpfiles.d/pimesh.conf"
install -m 0644 "$debian/60-pimesh.rules" "$root/usr/lib/udev/rules.d/60-pimesh.rules"
install -m 0644 "$here/pi/pimesh.json" "$root/etc/pimesh/pimesh.json"
install -m 0644 "$debian/agents.d-README" "$root/etc/pimesh/agents.d/README"
install -m 0644 "$debian/example.json.sample" "$root/etc/pimesh/agents.d/example.json.sample"
install -m 0644 "$debian/copyright" "$root/usr/share/doc/pimesh/copyright"
gzip -9n -c "$debian/changelog" > "$root/usr/share/doc/pimesh/changelog.gz"
for doc in "$here/README.md" "$here"/docs/*.md; do
  gzip -9n -c "$doc" > "$root/usr/share/doc/pimesh/$(basename "$doc").gz"
done
gzip -9n -c "$man_dir/pimesh.1" > "$root/usr/share/man/man1/pimesh.1.gz"
# Sourced by bash-completion, never run: without its #! line.
sed '1{/^#!/d}' "$completions_dir/pimesh.bash" > "$root/usr/share/bash-completion/completions/pimesh"
chmod 0644 "$root/usr/share/bash-completion/completions/pimesh"
install -m 0644 "$completions_dir/_pimesh" "$root/usr/share/zsh/vendor-completions/_pimesh"
install -m 0644 "$completions_dir/pimesh.fish" "$root/usr/share/fish/vendor_completions.d/pimesh.fish"
for script in postinst prerm postrm; do install -m 0755 "$debian/$script" "$root/DEBIAN/$script"; done
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) > "$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# Depends: the packages of the libraries the binary links, at the versions its symbols need.
libraries=""
readelf -d "$bin" > "$work/dynamic" 2>/dev/null || true
if grep -q '(NEEDED)' "$work/dynamic"; then
  mkdir -p "$work/shlibs/debian"
  printf 'Source: pimesh\n\nPackage: pimesh\nArchitecture: any\n' > "$work/shlibs/debian/control"
  libraries=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$bin" 2>"$work/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') ||
    fail "dpkg-shlibdeps could not resolve the libraries of $bin: $(cat "$work/shlibdeps.err")"
fi
# Packed relative relocations (lld -z pack-relative-relocs, the Makefile) need glibc 2.36, which
# the symbol versions dpkg-shlibdeps reads do not say.
if grep -q '(RELR)' "$work/dynamic"; then
  current=$(sed -n 's/.*libc6 (>= \([^)]*\)).*/\1/p' <<<"$libraries")
  if [ -n "$current" ] && dpkg --compare-versions "$current" lt 2.36; then
    libraries=${libraries/libc6 (>= $current)/libc6 (>= 2.36)}
  fi
fi
# libcurl is loaded by the first upload or download (dlopen, Sources/CCurl), so the
# binary does not name it: 7.85 for CURLOPT_PROTOCOLS_STR; Debian 13 renamed the package.
on_demand="libcurl4 (>= 7.85.0) | libcurl4t64"
depends="systemd, init-system-helpers (>= 1.54~)${libraries:+, $libraries}, $on_demand"

(cd "$root" && find usr etc -type f -exec md5sum {} + | sort -k2) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
  "$debian/control.in" > "$root/DEBIAN/control"
mkdir -p "$out"
deb="$out/pimesh_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
