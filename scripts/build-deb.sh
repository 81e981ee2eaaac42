#!/usr/bin/env bash
# Build the Debian package with Debian's own tools, on Debian 12, as root:
#   bash scripts/build-deb.sh
# It installs the build dependencies and writes dist/sesame_VERSION_all.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=(build-essential debhelper dh-python pybuild-plugin-pyproject python3-all
      python3-setuptools python3-build python3-installer python3-wheel
      python3-cryptography python3-prometheus-client)
missing=()
for pkg in "${deps[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a copy of the tracked files only: nothing of a working copy's venv or
# caches gets in; Debian's own python3 builds it (not one a PATH puts first).
# dpkg-buildpackage writes the package next to the source tree.
mkdir "$work/sesame"
git ls-files -z | xargs -0 cp --parents -t "$work/sesame"
(cd "$work/sesame" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >../build.log 2>&1) || {
    tail -40 "$work/build.log"
    exit 1
}
mkdir -p dist
mv "$work"/sesame_*_all.deb dist/
ls dist/sesame_*_all.deb
