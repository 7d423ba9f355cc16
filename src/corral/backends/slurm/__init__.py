"""The Slurm backend: components as Slurm batch jobs (see ``backend``).

``SlurmBackend`` drives a cluster through Slurm's own commands; ``SlurmSite`` holds the
per-cluster settings (partition, account, QoS, constraint, GRES name, extra sbatch
options).
"""

from corral.backends.slurm.backend import SlurmBackend
from corral.backends.slurm.script import SlurmSite

__all__ = ["SlurmBackend", "SlurmSite"]
