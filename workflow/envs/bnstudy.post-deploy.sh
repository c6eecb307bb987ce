#!/bin/sh
# Run by Snakemake inside the new conda environment once it is built (from the locked
# requirements): install this repository without touching those pins, as the README's
# Quickstart does. Snakemake runs it from its working directory, the repository root.
set -eu
python -m pip install --no-deps -e .
