"""Damage or fault: the errors Orbax and tensorstore raise reading a tiny
checkpoint whose files were damaged in each way (real errors, not copies of
their messages), and the faults a machine gives, as a table."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from acnet_jax.training import read_errors

ABSTRACT = {'a': jax.ShapeDtypeStruct((1000,), jnp.float32)}
# Messages as tensorstore gives them (its spec cut short); a real EIO cannot
# be had on demand, a permission error not as root.
TENSORSTORE_EIO = ValueError(
  'FAILED_PRECONDITION: Error reading local file "/w/checkpoints/4/state/_sharding": Failed '
  'to read: Input/output error [os_error_code=\'5\'] [tensorstore_spec=\'{"driver":"zarr"}\']'
)
TENSORSTORE_EACCES = ValueError(
  'PERMISSION_DENIED: Error reading "a/0" in OCDBT database at local file "/w/4/state/": '
  'Failed to open: "/w/4/state/ocdbt.process_0/d/55cc": Permission denied [os_error_code=\'13\']'
)
TENSORSTORE_ENOENT = ValueError(
  'NOT_FOUND: Error reading local file "/w/4/state/d/1": [os_error_code=\'2\']'
)
OUT_OF_MEMORY = jax.errors.JaxRuntimeError(
  'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes.'
)


@pytest.fixture(scope='module')
def saved(tmp_path_factory) -> Path:
  """A checkpoint of one array of 1000 floats: step 1 of a manager's folder."""
  directory = tmp_path_factory.mktemp('saved')
  with ocp.CheckpointManager(directory) as manager:
    manager.save(
      1,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave({'a': jnp.arange(1000, dtype=jnp.float32)})
      ),
    )
  return directory


def largest_data_file(step: Path) -> Path:
  return max(
    (p for p in (step / 'state' / 'ocdbt.process_0' / 'd').iterdir()),
    key=lambda p: p.stat().st_size,
  )


def garbage(path: Path) -> None:
  path.write_bytes(b'\xff' * path.stat().st_size)


def truncate(path: Path) -> None:
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
  'a data file of garbage (FAILED_PRECONDITION)': lambda s: garbage(largest_data_file(s)),
  'a data file cut short (OUT_OF_RANGE)': lambda s: truncate(largest_data_file(s)),
  'a manifest of garbage (DATA_LOSS)': lambda s: garbage(s / 'state' / 'manifest.ocdbt'),
  'metadata of garbage (UnicodeDecodeError)': lambda s: garbage(s / 'state' / '_METADATA'),
  'empty metadata (JSONDecodeError)': lambda s: (s / 'state' / '_METADATA').write_text(''),
  'metadata removed (FileNotFoundError)': lambda s: (s / 'state' / '_METADATA').unlink(),
  'a sharding file of garbage (Invalid JSON)': lambda s: garbage(s / 'state' / '_sharding'),
}


def restore_error(directory: Path, abstract: dict = ABSTRACT) -> Exception:
  with pytest.raises(Exception) as caught:
    ocp.CheckpointManager(directory).restore(
      1, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    )
  return caught.value


@pytest.mark.parametrize('name', DAMAGE)
def test_damaged_files_show_damage(name, saved, tmp_path):
  directory = shutil.copytree(saved, tmp_path / 'copy')
  DAMAGE[name](directory / '1')
  error = restore_error(directory)
  assert read_errors.shows_damage(error), repr(error)
  assert not read_errors.is_transient(error)


def test_another_shape_is_a_fault_not_damage(saved):
  error = restore_error(saved, {'a': jax.ShapeDtypeStruct((999,), jnp.float32)})
  assert not read_errors.shows_damage(error)
  assert 'not compatible with the stored shape' in read_errors.summary(error)


def wrapped(error: Exception) -> Exception:
  """As Orbax wraps a tensorstore error while reading an array."""
  outer = Exception('Encountered error while reading array index: (slice(0, 1000, 1),).')
  outer.__cause__ = error
  return outer


@pytest.mark.parametrize(
  'error,damage,transient',
  [
    (wrapped(TENSORSTORE_EIO), False, True),
    (OSError(errno.EIO, 'Input/output error', '/w/4/state/_METADATA'), False, True),
    (wrapped(TENSORSTORE_EACCES), False, True),
    (PermissionError(errno.EACCES, 'Permission denied'), False, True),
    (OSError(errno.ESTALE, 'Stale file handle'), False, True),
    (OUT_OF_MEMORY, False, False),
    (MemoryError(), False, False),
    (
      ValueError('Requested shape: (999,) is not compatible with the stored shape: (1000,).'),
      False,
      False,
    ),
    (RuntimeError('something else'), False, False),
    (wrapped(TENSORSTORE_ENOENT), True, False),
    (
      ValueError(
        'Error opening "zarr" driver: Error decoding b-tree node: '
        'ZSTD_decompressStream() failed: Data corruption detected'
      ),
      True,
      False,
    ),
    (json.JSONDecodeError('Expecting value', '', 0), True, False),
  ],
)
def test_faults_and_damage_are_told_apart(error, damage, transient):
  assert read_errors.shows_damage(error) == damage
  assert read_errors.is_transient(error) == transient


def test_the_summary_names_the_telling_error_without_tensorstore_spec():
  assert read_errors.summary(wrapped(TENSORSTORE_EIO)) == (
    'ValueError: FAILED_PRECONDITION: Error reading local file '
    '"/w/checkpoints/4/state/_sharding": Failed to read: Input/output error '
    "[os_error_code='5']"
  )
  assert read_errors.summary(MemoryError()) == 'MemoryError'
