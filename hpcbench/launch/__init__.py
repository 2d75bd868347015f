"""Launch: local processes now; schedulers (Slurm, PBS) x launchers (torchrun, srun, mpirun) next."""
