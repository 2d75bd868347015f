#!/bin/bash
# hpcbench aggregation job, rendered by `hpcbench render`: report over the sweep's records
#SBATCH --job-name=hpcbench-cnn-report
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --gpus-per-node=4
#SBATCH --time=01:30:00
#SBATCH --partition=gpu
#SBATCH --account=proj-42
#SBATCH --qos=normal
#SBATCH --output=/scratch/sweeps/cnn/logs/%x-%j.out
#SBATCH --signal=B:USR1@120
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
