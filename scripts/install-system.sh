#!/usr/bin/env bash
# Install the Debian packages listed in the given files that are not installed yet.
# A line is "PACKAGE [COMMAND]": with a COMMAND, the package is only wanted when that
# command is not on PATH already (node and npm may come from another distribution of
# Node.js, whose packages conflict with Debian's npm).
set -euo pipefail

wanted=()
for list in "$@"; do
  while read -r name command; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    if [[ -n "${command:-}" ]] && command -v "$command" >/dev/null 2>&1; then
      continue
    fi
    if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
      wanted+=("$name")
    fi
  done < "$list"
done

if ((${#wanted[@]} == 0)); then
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${wanted[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing Debian packages: ${wanted[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps Debian from starting system-wide redis/postgresql/kamailio services:
# the tests and benchmarks start private servers of their own on free ports.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${wanted[@]}"
