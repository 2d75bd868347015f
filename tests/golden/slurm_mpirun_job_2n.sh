#!/bin/bash
# hpcbench benchmark job, rendered by `hpcbench render`: 2 node(s) x 4 task(s), mpirun
#SBATCH --job-name=hpcbench-cnn
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=8
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
# mpirun: the ranks find rank 0 themselves
export OMP_NUM_THREADS=8
mkdir -p /scratch/sweeps/cnn/records

# The time-limit warning (USR1) goes to the launcher, which passes it to every rank: the ranks
# agree on a step, stop there and write an `interrupted` record before the limit.
mpirun -np 8 --map-by ppr:4:node --bind-to none -x OMP_NUM_THREADS apptainer exec --nv '/images/hpc bench.sif' python3 -m hpcbench.worker --workload cnn --engine ddp --batch-size 64 --steps 50 --warmup 5 --repeats 3 --seed 0 --loader-workers 0 --no-pin-memory --timeout 120.0 --scaling weak --breakdown --no-phases --precision fp32 --no-channels-last --no-compile --mode throughput --lr-scaling none --lr-warmup-steps 0 --model resnet50 --device cuda --threads 8 --out /scratch/sweeps/cnn/records &
launcher=$!
trap 'kill -USR1 "$launcher" 2>/dev/null || true' USR1
status=0
while true; do
    wait "$launcher" && status=0 || status=$?
    kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
