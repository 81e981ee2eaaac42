#!/usr/bin/env bash
# Set up everything sesame needs on Debian 12, as root: the kernel-side tools,
# the peers the tests talk to, and a virtual environment in .venv with sesame in it.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nftables libnftables1 iproute2 knockd nmap hping3 fwknop-client fwknop-server iptables faketime coturn systemd systemd-container debootstrap fail2ban man-db openssh-server openssh-client redis-server)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# fail2ban is here for fail2ban-regex (the filter's tests), openssh-server for an sshd
# and redis-server for a cluster's store, which the tests start in lab namespaces:
# their own daemons are not wanted.
if command -v systemctl >/dev/null; then
    for unit in fail2ban ssh redis-server; do
        if systemctl is-active --quiet "$unit" 2>/dev/null; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
    done
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
