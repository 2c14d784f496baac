#!/usr/bin/env bash
# Install the Debian Slurm stack the launcher tests run a real single-host cluster on:
# slurmctld + slurmd (slurm-wlm), munge (auth), slurmdbd + MariaDB (accounting, so submitit can read
# job states through sacct). Idempotent: a machine that already has every binary returns at once.
# Needs root (or passwordless sudo) and apt; takes about 40 s on a bare Debian 12 machine. `make test`
# runs it first; without the rights to install, it stops in a second with the command to run.
#
# The packages' init scripts must not start system-wide daemons: the tests start their own, with
# configs in a temp dir, and stop them again. Where no policy-rc.d forbids service starts, one is
# put in place for the duration of the install and removed afterwards.
set -euo pipefail

# SLURM_SEARCH_DIRS (default: $PATH and /usr/sbin) and APT_GET (default: apt-get) exist so that the
# "not installed, cannot install" paths can be tested on a machine that has Slurm.
need=(slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db)
search=${SLURM_SEARCH_DIRS:-$PATH:/usr/sbin}
missing=()
for b in "${need[@]}"; do
    found=0
    IFS=: read -ra dirs <<< "$search"
    for d in "${dirs[@]}"; do
        if [ -n "$d" ] && [ -x "$d/$b" ]; then found=1; break; fi
    done
    [ "$found" = 1 ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_slurm: slurm, munge, slurmdbd and mariadb already installed"
    exit 0
fi

# Fail at once, in one line, when this process cannot install: never after minutes of other work.
APT_GET=${APT_GET:-apt-get}
here=$(cd "$(dirname "$0")" && pwd)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo"
    else
        echo "install_slurm: the tests need Slurm (missing ${missing[*]}); install it once as root: sudo bash $here/install_slurm.sh" >&2
        exit 1
    fi
fi
if ! command -v "$APT_GET" >/dev/null 2>&1; then
    echo "install_slurm: the tests need Slurm (missing ${missing[*]}) and there is no $APT_GET here; install slurm-wlm, slurmdbd, munge and mariadb-server with this system's package manager" >&2
    exit 1
fi
echo "install_slurm: missing ${missing[*]}; installing"

POLICY=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from nemo-r1 tools/install_slurm.sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    added_policy=1
fi
cleanup() { if [ "$added_policy" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO "$APT_GET" update -q
$SUDO "$APT_GET" install -y -q --no-install-recommends \
    slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client
# The munge package creates /etc/munge/munge.key in its postinst; make sure one exists.
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
fi
echo "install_slurm: done (slurm $(dpkg-query -W -f='${Version}' slurm-wlm))"
