"""Whether a run is one of several processes, by JAX's own cluster detection.

`jax.distributed.initialize()` without arguments takes the coordinator, the
number of processes and this one's id from the first cluster environment JAX
detects, in JAX's order: Open MPI (mpirun), SLURM (srun), Cloud TPU on GCE or
GKE, Kubernetes (an indexed Job, with the `kubernetes` package); mpi4py only
when asked for by name. A run initializes when that environment holds more
than one process, or when the coordinator flags are given: a one-task SLURM
job or a single TPU host runs as one process, as it would without a cluster.
"""

from __future__ import annotations

from absl import logging
from jax._src import clusters  # JAX's detection; no public module exposes it (jax 0.10).

from acnet_jax.errors import InputError

# What a process needs to meet the others without a cluster's help.
ARGUMENTS = ('--coordinator_address', '--num_processes', '--process_id')


def detected_cluster() -> type[clusters.ClusterEnv] | None:
  """The environment jax.distributed.initialize() would read, picked as it
  picks one: the first present that is not opt-in only (mpi4py is)."""
  return next(
    (
      env
      for env in clusters.ClusterEnv._cluster_types
      if not env.opt_in_only_method and env.is_env_present()
    ),
    None,
  )


def processes_in(cluster: type[clusters.ClusterEnv]) -> int:
  """How many processes `cluster` runs; 1 where it cannot say (a Kubernetes
  pod that is no indexed Job runs on its own)."""
  try:
    return cluster.get_process_count()
  except Exception as error:  # JAX's lookups raise what their APIs raise.
    logging.warning(
      'JAX detects %s but cannot count its processes (%s): running as one '
      'process; --coordinator_address or --distributed start several.',
      cluster.__name__,
      error,
    )
    return 1


def wants_distributed(
  distributed: bool | None,
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
) -> bool:
  """Whether main calls jax.distributed.initialize(): as --distributed says,
  by default when any of ARGUMENTS is given or the detected cluster runs
  several processes. InputError where JAX could not find the others."""
  if distributed is False:
    return False
  values = (coordinator_address, num_processes, process_id)
  given = [name for name, value in zip(ARGUMENTS, values) if value is not None]
  cluster = detected_cluster()
  if cluster is not None:
    return bool(distributed or given) or processes_in(cluster) > 1
  missing = [name for name in ARGUMENTS if name not in given]
  if (given or distributed) and missing:
    raise InputError(
      f'{" and ".join(given or ["--distributed"])} given without {" and ".join(missing)}, '
      'and JAX detects no cluster that would supply them. Several processes meet at a '
      "coordinator: start each with the same --coordinator_address=HOST:PORT (process 0's "
      'host, a free port) and --num_processes=N, and its own --process_id (0 to N-1); or '
      'launch them where JAX detects the cluster (srun, mpirun, a Cloud TPU pod slice, an '
      'indexed Kubernetes Job), which supplies all three; or, for one process, give none of '
      'these flags.'
    )
  return bool(given)
