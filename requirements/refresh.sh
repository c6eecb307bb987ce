#!/bin/sh
# Refresh the lock files from pyproject.toml (docs/install.md, "Refreshing the lock"):
#
#   sh requirements/refresh.sh              # add what pyproject.toml now asks for, keep other pins
#   sh requirements/refresh.sh --upgrade    # move every package to its newest allowed version
#   sh requirements/refresh.sh --upgrade-package jax --upgrade-package jaxlib   # just these
#
# Arguments go to `uv pip compile`. uv runs from a throwaway virtual environment (pinned
# below), so nothing but python3 with venv is needed and nothing is left behind. It resolves
# once for every platform and every Python >= 3.11 (--universal) and, where a package has a
# release for newer Pythons only, keeps the version that all of them share (--fork-strategy
# fewest), so Debian 12 (3.11) and Ubuntu 24.04 (3.12) install the same versions.
#
# Outputs, both with sha256 hashes of every file (pip then checks each download):
#   requirements/cpu.txt    the package + extras test, lint          (any OS, CPU JAX)
#   requirements/cuda.txt   the package + extras test, lint, cuda    (Linux, NVIDIA GPU)
# and the sha256 of each lock is written into its conda environment file
# (workflow/envs/bnstudy.yaml, bnstudy-cuda.yaml), so that Snakemake's conda deployment builds
# a new environment when the lock changes.
set -eu
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"

compile() {  # compile OUTPUT EXTRA... [-- UV ARGS]
    out=$1
    shift
    "$tmp/venv/bin/uv" pip compile pyproject.toml "$@" \
        --universal --fork-strategy fewest --python-version 3.11 --generate-hashes \
        --custom-compile-command "sh requirements/refresh.sh" --quiet -o "$out"
}
compile requirements/cpu.txt --extra test --extra lint "$@"
compile requirements/cuda.txt --extra test --extra lint --extra cuda "$@"

# torch is no dependency of this project; a lock that pulls it in is a mistake.
if grep -qiE '^torch==' requirements/cpu.txt requirements/cuda.txt; then
    echo "refresh.sh: torch appeared in a lock; find what pulls it in (uv pip tree)" >&2
    exit 1
fi

stamp() {  # stamp ENV_FILE LOCK
    sum=$(sha256sum "$2" | cut -d' ' -f1)
    sed -i "s|^# lock: .*|# lock: $2 sha256:$sum|" "$1"
}
stamp workflow/envs/bnstudy.yaml requirements/cpu.txt
stamp workflow/envs/bnstudy-cuda.yaml requirements/cuda.txt
echo "refreshed requirements/cpu.txt and requirements/cuda.txt; now run the tests"
