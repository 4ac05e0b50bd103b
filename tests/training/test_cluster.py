"""main initializes jax.distributed where JAX's own detection finds a cluster of
several processes, from the variables each launcher sets (nothing is
initialized here), or where the coordinator flags are given; a flag JAX could
not complete is one paragraph."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from jax._src.clusters import cloud_tpu_cluster, k8s_cluster

from acnet_jax.errors import InputError
from acnet_jax.training.cluster import detected_cluster, wants_distributed

# What each launcher sets, as JAX's detection reads it.
SLURM = {
  'SLURM_JOB_ID': '4242',
  'SLURM_STEP_NODELIST': 'node[001-004]',
  'SLURM_NTASKS': '4',
  'SLURM_PROCID': '1',
  'SLURM_LOCALID': '0',
}
OPEN_MPI = {
  'OMPI_MCA_orte_hnp_uri': '1531576320.0;tcp://10.96.0.1:34911',
  'OMPI_COMM_WORLD_SIZE': '2',
  'OMPI_COMM_WORLD_RANK': '1',
  'OMPI_COMM_WORLD_LOCAL_RANK': '0',
}
GKE_TPU = {
  'TPU_WORKER_HOSTNAMES': 'tpu-0,tpu-1,tpu-2,tpu-3',
  'TPU_WORKER_ID': '2',
  'MEGASCALE_NUM_SLICES': '1',
}
KUBERNETES = {'KUBERNETES_SERVICE_HOST': '10.0.0.1', 'JOB_COMPLETION_INDEX': '3'}
# A TPU VM's metadata server, for GCE (on GKE the variables above stand in for it).
GCE_METADATA = {
  'agent-worker-number': '1',
  'worker-network-endpoints': 'w0:0:10.0.0.2,w1:1:10.0.0.3',
  'tpu-env': "MEGASCALE_NUM_SLICES: '1'",
}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
  """A process no launcher started, whatever runs the tests."""
  for name in [
    *SLURM,
    *OPEN_MPI,
    *GKE_TPU,
    *KUBERNETES,
    'TPU_PROCESS_ADDRESSES',
    'TPU_SKIP_MDS_QUERY',
  ]:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(cloud_tpu_cluster, 'running_in_cloud_tpu_vm', False)


def launched(monkeypatch, variables: dict[str, str]) -> None:
  for name, value in variables.items():
    monkeypatch.setenv(name, value)


def by_default(**flags) -> bool:
  arguments = dict(distributed=None, coordinator_address=None, num_processes=None, process_id=None)
  return wants_distributed(**{**arguments, **flags})


def on_a_tpu_vm(monkeypatch, metadata: dict[str, str]) -> None:
  """JAX's TPU start-up found TPU chips; its metadata server answers `metadata`."""
  monkeypatch.setattr(cloud_tpu_cluster, 'running_in_cloud_tpu_vm', True)
  monkeypatch.setattr(
    cloud_tpu_cluster,
    'get_metadata',
    lambda key: (metadata[key], 200) if key in metadata else ('', 404),
  )


def test_a_process_no_launcher_started_runs_alone():
  assert detected_cluster() is None and not by_default()


@pytest.mark.parametrize('name, variables', [('SlurmCluster', SLURM), ('OmpiCluster', OPEN_MPI)])
def test_slurm_and_open_mpi(monkeypatch, name, variables):
  launched(monkeypatch, variables)
  assert detected_cluster().__name__ == name and by_default()
  assert not by_default(distributed=False)


def test_a_one_task_slurm_job_runs_as_one_process(monkeypatch):
  launched(monkeypatch, {**SLURM, 'SLURM_NTASKS': '1', 'SLURM_PROCID': '0'})
  assert detected_cluster().__name__ == 'SlurmCluster'
  assert not by_default()
  assert by_default(distributed=True)


def test_slurm_variables_outside_srun_are_no_cluster(monkeypatch):
  # An sbatch script's own process: SLURM_NTASKS, but no step to join.
  launched(monkeypatch, {'SLURM_JOB_ID': '4242', 'SLURM_NTASKS': '4'})
  assert detected_cluster() is None and not by_default()


def test_a_cloud_tpu_pod_slice_on_gke(monkeypatch):
  launched(monkeypatch, GKE_TPU)
  assert detected_cluster() is None  # The variables alone, off a TPU VM.
  on_a_tpu_vm(monkeypatch, {})  # GKE's metadata server knows no TPU workers.
  assert detected_cluster().__name__ == 'GkeTpuCluster' and by_default()
  monkeypatch.setenv('TPU_WORKER_HOSTNAMES', 'tpu-0')
  assert not by_default()  # One host.


def test_a_cloud_tpu_pod_slice_on_gce(monkeypatch):
  on_a_tpu_vm(monkeypatch, GCE_METADATA)
  assert detected_cluster().__name__ == 'GceTpuCluster' and by_default()
  # What JAX's TPU start-up sets on a machine without TPU chips.
  monkeypatch.setenv('TPU_SKIP_MDS_QUERY', '1')
  assert detected_cluster() is None


def kubernetes_job(monkeypatch, job) -> None:
  """The `kubernetes` package in a pod, and what its API says of the pod's Job."""
  monkeypatch.setitem(
    sys.modules,
    'kubernetes',
    types.SimpleNamespace(
      config=types.SimpleNamespace(load_incluster_config=lambda: None),
      client=types.SimpleNamespace(
        CoreV1Api=object,
        BatchV1Api=object,
        exceptions=types.SimpleNamespace(ApiException=Exception),
      ),
    ),
  )
  monkeypatch.setattr(k8s_cluster.K8sCluster, '_job', classmethod(lambda cls: job()))


def test_an_indexed_kubernetes_job(monkeypatch):
  launched(monkeypatch, KUBERNETES)
  if importlib.util.find_spec('kubernetes') is None:
    with pytest.warns(UserWarning, match='kubernetes'):
      assert detected_cluster() is None  # As JAX: no bootstrapping without the package.
  kubernetes_job(
    monkeypatch, lambda: types.SimpleNamespace(spec=types.SimpleNamespace(parallelism=4))
  )
  assert detected_cluster().__name__ == 'K8sCluster' and by_default()


def test_a_kubernetes_pod_that_is_no_job_runs_alone(monkeypatch):
  launched(monkeypatch, KUBERNETES)

  def no_job():
    raise KeyError('job-name')  # The pod has no job-name label.

  kubernetes_job(monkeypatch, no_job)
  assert detected_cluster().__name__ == 'K8sCluster' and not by_default()


def test_the_coordinator_flags_initialize_without_a_cluster():
  assert by_default(coordinator_address='host0:1234', num_processes=2, process_id=0)
  assert not by_default(
    coordinator_address='host0:1234', num_processes=2, process_id=0, distributed=False
  )


@pytest.mark.parametrize(
  'flags, named',
  [
    (
      dict(num_processes=2, process_id=1),
      '--num_processes and --process_id given without '
      '--coordinator_address, and JAX detects no cluster',
    ),
    (dict(process_id=1), '--process_id given without --coordinator_address and --num_processes'),
    (
      dict(coordinator_address='host0:1234'),
      '--coordinator_address given without --num_processes and --process_id',
    ),
    (
      dict(distributed=True),
      '--distributed given without --coordinator_address and --num_processes and --process_id',
    ),
  ],
)
def test_flags_jax_could_not_complete_are_one_paragraph(flags, named):
  with pytest.raises(InputError) as error:
    by_default(**flags)
  assert str(error.value).startswith(named) and '\n' not in str(error.value)


def test_under_a_cluster_the_flags_need_not_be_complete(monkeypatch):
  launched(monkeypatch, SLURM)
  assert by_default(process_id=1)
