"""Every workaround for XLA:CPU, and the one dispatch that picks them.

    flags         the XLA flag that puts convolutions on Eigen (use_project_flags)
    batch_norm    BatchNorm's training op: flax's forward, its gradient in closed form on the CPU
    pairwise_sum  per-channel sums in halves: BN's statistics and gradient sums on the CPU
    pooling       max and average pooling with gradients XLA:CPU computes fast, exactly
    relu          ReLU as a select: XLA:CPU stores each activation once instead of recomputing it
    init_compile  a model's init compiled unoptimised: its threefry draws compile 3-5x faster
    dispatch      on_cpu_or_plain, and the ops blocks and models call (relu, max_pool,
                  avg_pool, train_batch_norm, normalize): the CPU form on a CPU, the plain
                  jax/flax op elsewhere; init_compiler_options
    canaries      per workaround, whether the plain op still shows the defect behind it
                  (`python -m benchmarks.xla_cpu_workarounds` times each against it)

Each workaround is CPU-only unless measured elsewhere, computes the plain op's
values (exactly, or within float32's rounding of reordered sums), and is
tested against it. Nothing outside this package imports its forms: `blocks`
and `models` call `dispatch`, the commands call `use_project_flags` (imported
here from `flags`, which imports no JAX; importing this package sets nothing).
"""

from acnet_jax.xla_cpu.flags import use_project_flags

__all__ = ['use_project_flags']
