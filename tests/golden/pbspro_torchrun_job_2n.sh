#!/bin/bash
# hpcbench benchmark job, rendered by `hpcbench render`: 2 node(s) x 4 task(s), torchrun
#PBS -N hpcbench-cnn
#PBS -l select=2:ncpus=32:ngpus=4:mpiprocs=4
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
export MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")
export MASTER_PORT=$((20000 + ${PBS_JOBID%%[!0-9]*} % 20000))
export OMP_NUM_THREADS=8
export TORCHELASTIC_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1  # let torchrun pass USR1 on
mkdir -p /scratch/sweeps/cnn/records

# The time-limit warning (USR1) goes to the launcher, which passes it to every rank: the ranks
# agree on a step, stop there and write an `interrupted` record before the limit.
mpirun -np 2 --hostfile "$PBS_NODEFILE" --map-by ppr:1:node --bind-to none -x MASTER_ADDR -x MASTER_PORT -x OMP_NUM_THREADS -x TORCHELASTIC_SIGNALS_TO_HANDLE apptainer exec --nv '/images/hpc bench.sif' python3 -m torch.distributed.run --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$PBS_JOBID" -m hpcbench.worker --workload cnn --engine ddp --batch-size 64 --steps 50 --warmup 5 --repeats 3 --seed 0 --loader-workers 0 --no-pin-memory --timeout 120.0 --scaling weak --breakdown --no-phases --precision fp32 --no-channels-last --no-compile --mode throughput --lr-scaling none --lr-warmup-steps 0 --model resnet50 --device cuda --threads 8 --out /scratch/sweeps/cnn/records &
launcher=$!
trap 'kill -USR1 "$launcher" 2>/dev/null || true' USR1
status=0
while true; do
    wait "$launcher" && status=0 || status=$?
    kill -0 "$launcher" 2>/dev/null || break
done
exit "$status"
