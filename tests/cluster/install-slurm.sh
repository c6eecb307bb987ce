#!/usr/bin/env bash
# Installs what the SLURM cluster test (tests/cluster/) needs on Debian 12: the SLURM 22.05
# daemons and clients, munge (authentication) and MariaDB (for slurmdbd, which `sacct`
# needs). Idempotent: it does nothing when every binary is already there. Needs root.
#
# The packages' services are not started here (Debian's image policy keeps them off, and the
# test starts its own daemons in a temporary folder and stops them by PID at the end).
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
BINARIES=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr squeue sinfo scancel srun
          munged mariadbd mariadb-install-db mariadb)

missing=()
for b in "${BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-slurm.sh: SLURM, munge and MariaDB are already installed"
    exit 0
fi
echo "install-slurm.sh: missing ${missing[*]}; installing ${PACKAGES[*]}"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-slurm.sh: installed $(dpkg-query -W -f='${Package} ${Version}, ' "${PACKAGES[@]}")"
