#!/bin/bash
# hpcbench aggregation job, rendered by `hpcbench render`: report over the sweep's records
#PBS -N hpcbench-cnn-report
#PBS -l select=1:ncpus=1:ngpus=4:mpiprocs=1
#PBS -l place=scatter:excl
#PBS -l walltime=01:30:00
#PBS -q gpu
#PBS -A proj-42
#PBS -j oe
#PBS -o /scratch/sweeps/cnn/logs/
cd "$PBS_O_WORKDIR"
set -euo pipefail
module load cuda/12.4
module load openmpi/4.1
export NCCL_DEBUG=WARN
export HPCBENCH_NETWORK='4x HDR200 InfiniBand'  # the interconnect: part of the system every record describes
:
export OMP_NUM_THREADS=1
mkdir -p /scratch/sweeps/cnn/records

# The time-limit warning (USR1) goes to the launcher, which passes it to every rank: the ranks
# agree on a step, stop there and write an `interrupted` record before the limit.
apptainer exec --nv '/images/hpc bench.sif' python3 -m hpcbench report /scratch/sweeps/cnn/records -o /scratch/sweeps/cnn/report &
launcher=$!
trap 'kill -USR1 "$launcher" 2>/dev/null || true' USR1
status=0
while true; do
    wait "$launcher" && status=0 || status=$?
    kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
