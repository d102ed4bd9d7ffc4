# Sourced by setup.sh and setup-tests.sh: install_packages PKG... installs Debian packages without
# starting, stopping or reconfiguring any service.
#
# Debian's maintainer scripts start a daemon they install (nginx, php8.2-fpm) through invoke-rc.d,
# which first asks /usr/sbin/policy-rc.d; exit status 101 means "action forbidden" (Debian Policy
# 9.3.3, invoke-rc.d(8)). So while apt-get runs, a policy-rc.d that answers 101 keeps newly
# installed daemons stopped; it is removed by a trap on every exit path. An existing policy-rc.d
# is the operator's: it is never replaced or removed (it already decides), and nothing here ever
# calls systemctl or service. Packages already installed are not reinstalled or upgraded.
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "installing: ${missing[*]}" >&2
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e "$policy" ] && [ ! -L "$policy" ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
    printf '#!/bin/sh\n# why502 setup: no service starts while packages install (removed afterwards)\nexit 101\n' \
      > "$policy"
    chmod 755 "$policy"
    ours=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade "${missing[@]}" \
    >/dev/null
  if [ "$ours" -eq 1 ]; then
    rm -f "$policy"
    trap - EXIT INT TERM
  fi
}
