#!/bin/bash
# A suite over a Slurm job array: every array task runs one shard of it (its share of the cells,
# split by cell hash) and writes its own records file; the run is the directory of those files.
#
#   sbatch --array=0-7 examples/cluster/slurm-array.sh suites/default.yaml    # 8 shards
#   squeue --me                                                                # wait for them
#   hlbench report results/default/slurm<JOBID>-*/ -o reports/default.md       # one report
#
# The run id is "slurm<array job id>-<suite hash>", the same in every task, so the records go to
# results/<suite>/slurm<JOBID>-<hash>/shard-I-of-N.jsonl. --array may start anywhere and step
# (1-8, 0-14:2): hlbench maps the task to shard 0 … N-1 through SLURM_ARRAY_TASK_MIN/_STEP/_COUNT.
# A "%K" suffix (--array=0-63%8) caps how many shards run at once. A requeued task (--requeue,
# preemption, a node failure) keeps its array job id, so it continues its own file: the cells it
# already recorded ok are not run again.
#
# To report when the array ends, without waiting by hand:
#   JOB=$(sbatch --parsable --array=0-7 examples/cluster/slurm-array.sh suites/default.yaml)
#   sbatch --dependency=afterany:$JOB --wrap "hlbench report results/default/slurm$JOB-*/ -o reports/default.md"
#
#SBATCH --job-name=hlbench
#SBATCH --array=0-7
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1          # GPUs per shard: 1 for single-device cells; a suite with a
#                                  # `launcher:` needs launcher.nproc_per_node (e.g. 8)
#SBATCH --cpus-per-task=8           # the host side: data, telemetry, the worker's threads
#SBATCH --time=12:00:00             # for the whole shard: about (cells / shards) × repeats × a cell
#SBATCH --requeue
#SBATCH --output=slurm-%A_%a.out

set -euo pipefail

SUITE=${1:?usage: sbatch --array=0-N-1 $0 SUITE.yaml [extra hlbench run flags]}
shift
# On a filesystem every node sees (the submit directory by default); on nodes without one, write
# to local disk and sync that directory to an object store yourself (see the README).
RESULTS=${HLBENCH_RESULTS:-${SLURM_SUBMIT_DIR:-$PWD}/results}

cd "${SLURM_SUBMIT_DIR:-$PWD}"
if [[ -n "${HLBENCH_VENV:-}" ]]; then   # the environment hlbench and its frameworks live in
    # shellcheck disable=SC1091
    source "$HLBENCH_VENV/bin/activate"
fi

# Exit status 1 (some cell ended oom/timeout/error; its record says why) marks the task FAILED in
# sacct, which is the point: look at the report. 130: stopped by a signal (time limit, scancel);
# the shard's file is resumable and a requeue continues it.
exec hlbench run "$SUITE" --shard auto --results-dir "$RESULTS" --quiet "$@"
