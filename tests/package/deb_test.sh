#!/usr/bin/env bash
# The Debian package, end to end (integration tier, root): `cpack -G DEB` in the build tree makes
# why502_<version>_amd64.deb; its metadata (dependencies from dpkg-shlibdeps) and contents are
# checked; `dpkg -i` installs it into a scratch root with its own dpkg database (--instdir and
# --admindir: the host's packages and services are never touched), the installed binary runs
# `why502 doctor` on this kernel, the unit is installed but not enabled, and `dpkg -r` removes every
# file it installed. Usage: tests/package/deb_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "${1:?usage: deb_test.sh BUILD_DIR}")
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/why502-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT

version=$(sed -n 's/^project(why502 VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../../CMakeLists.txt")
[[ -n $version ]] || fail "no project version in CMakeLists.txt"
(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb="$work/out/why502_${version}_amd64.deb"
[[ -f $deb ]] || { ls -l "$work/out" >&2; fail "no $deb"; }

info=$(dpkg-deb -I "$deb")
grep -q "^ Package: why502$" <<<"$info" || fail "package name: $info"
depends=$(sed -n 's/^ Depends: //p' <<<"$info")
for lib in libbpf1 libstdc++6 libc6 libprometheus-cpp-pull1.0; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (shlibdeps): $depends"
done
contents=$(dpkg-deb -c "$deb" | awk '{ print $NF }')
for f in ./usr/sbin/why502 ./usr/lib/systemd/system/why502.service ./usr/share/man/man8/why502.8 \
  ./usr/share/bash-completion/completions/why502; do
  grep -qx -- "$f" <<<"$contents" || fail "$f missing from the package: $contents"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -Eq '(pre|post)(inst|rm)' && fail "maintainer scripts: the unit must not be enabled or started"

root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
dpkg_scratch() { dpkg --admindir="$root/var/lib/dpkg" --instdir="$root" --force-depends --force-script-chrootless "$@"; }
dpkg_scratch -i "$deb" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i"; }
dpkg_scratch -s why502 | grep -q "^Status: install ok installed" || fail "not installed"
grep -q "ExecStart=/usr/sbin/why502 watch" "$root/usr/lib/systemd/system/why502.service" || fail "the unit does not run /usr/sbin/why502"
[[ -z $(find "$root" -path '*/etc/systemd/system/*' -name 'why502*' 2>/dev/null) ]] || fail "the unit was enabled"
"$root/usr/sbin/why502" --version | grep -qx "why502 $version" || fail "--version"
doctor=$("$root/usr/sbin/why502" doctor --json) || fail "why502 doctor exited non-zero: $doctor"
grep -q '"type":"doctor"' <<<"$doctor" || fail "doctor printed no doctor line: $doctor"
grep -q '^\.TH WHY502 8' "$root/usr/share/man/man8/why502.8" || fail "man page header"
grep -q -- '--metrics' "$root/usr/share/man/man8/why502.8" || fail "man page lacks watch's options"
bash -c ". '$root/usr/share/bash-completion/completions/why502'; complete -p why502" >/dev/null || fail "completion does not load"

dpkg_scratch -r why502 >"$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; fail "dpkg -r"; }
left=$(find "$root" -type f ! -path "$root/var/lib/dpkg/*")
[[ -z $left ]] || fail "files left after dpkg -r: $left"
echo "deb_test: ok: $(basename "$deb"), Depends: $depends"
