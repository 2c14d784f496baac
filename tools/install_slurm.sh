#!/usr/bin/env bash
# Install the Debian Slurm stack the launcher tests run a real single-host cluster on:
# slurmctld + slurmd (slurm-wlm), munge (auth), slurmdbd + MariaDB (accounting, so submitit can read
# job states through sacct). Idempotent: a machine that already has every binary returns at once.
# Needs root (or sudo) and apt; takes about 40 s on a bare Debian 12 machine.
#
# The packages' init scripts must not start system-wide daemons: the tests start their own, with
# configs in a temp dir, and stop them again. Where no policy-rc.d forbids service starts, one is
# put in place for the duration of the install and removed afterwards.
set -euo pipefail

need=(slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db)
missing=()
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_slurm: slurm, munge, slurmdbd and mariadb already installed"
    exit 0
fi
echo "install_slurm: missing ${missing[*]}; installing"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_slurm: run as root (or install sudo)" >&2; exit 1; }
    SUDO="sudo"
fi

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
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
    slurm-wlm slurmdbd slurm-client munge mariadb-server mariadb-client
# The munge package creates /etc/munge/munge.key in its postinst; make sure one exists.
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
fi
echo "install_slurm: done (slurm $(dpkg-query -W -f="${Version}" slurm-wlm))"
