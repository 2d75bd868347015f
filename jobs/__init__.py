"""Job templates (Slurm, PBS Pro, Torque) and site profiles, shipped as package data."""
