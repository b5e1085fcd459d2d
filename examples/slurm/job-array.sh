#!/bin/bash
# A Slurm job array on one committed lock: every task runs COMMAND in the environment
# the lock describes, built once per node on node-local scratch from a shared cache.
#
#   sbatch --array=0-31 examples/slurm/job-array.sh path/to/lockenv.lock -- python task.py
#
# Each task sees $SLURM_ARRAY_TASK_ID as usual.  Settings (environment variables, all
# optional; sbatch passes the submitting shell's environment to the tasks):
#
#   LOCKENV_CACHE_DIR   the shared cache (default: ~/.cache/lockenv): on the cluster's
#                       shared filesystem, so a wheel is downloaded for the cluster, not
#                       for every node; safe for many nodes at once.
#   LOCKENV_SCRATCH     node-local scratch for the environment (default: $TMPDIR, /tmp).
#   LOCKENV_BUNDLE      a bundle directory (`lockenv bundle`) for air-gapped nodes: the
#                       tasks then never use the network.
#   LOCKENV_MIRRORS     the site's mirrors (see the README), if the nodes need them.
#
# Once per node: every task asks for the environment, and lockenv's own lock on the
# prefix (a flock on .<prefix>.lock beside it) lets the first task of a node build it
# while the others wait, then find it up to date.  The prefix is named after the lock's
# sha256, so a new lock gets a new environment and a running array keeps its own.
#SBATCH --job-name=lockenv-array
#SBATCH --output=lockenv-array-%A_%a.out

set -euo pipefail

if [ $# -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: sbatch --array=... $0 LOCKFILE -- COMMAND [ARG]..." >&2
    exit 2
fi
lock=$(realpath "$1")
shift 2

scratch=${LOCKENV_SCRATCH:-${TMPDIR:-/tmp}}
prefix="$scratch/lockenv-$(id -u)/$(sha256sum "$lock" | cut -c1-16)"
mkdir -p "$(dirname "$prefix")"

options=(--lock "$lock" --prefix "$prefix" --frozen)
if [ -n "${LOCKENV_BUNDLE:-}" ]; then
    options+=(--bundle "$LOCKENV_BUNDLE" --offline)
fi

lockenv sync "${options[@]}"
exec lockenv run "${options[@]}" -- "$@"
