"""Conv blocks and their fusion rules.

primitives   BN, conv and symmetric padding as the authors use them
batch_norm   flax's BatchNorm with its gradient in closed form on the CPU
pairwise_sum per-channel sums in halves: BN's statistics and gradient sums on the CPU
platform     on_cpu_or_plain: the project's own gradients on the CPU, XLA's elsewhere
pooling      max and average pooling with gradients XLA:CPU computes fast, exactly
activation   ReLU as a select: XLA:CPU stores each activation once instead of recomputing it
algebra      kernel algebra: fold BN, centre kernels, 1x1-then-KxK, pooling and identity kernels
kinds        BlockKind: how fusion recognises a block and turns it into one conv
conv_bn      ConvBN (the baseline) and ConvBias (the deploy form)
online       what every kind's online form shares: its branches built into one kernel in the
             step, one conv, one BN (OREPA)
acb          the ACB (ACNet)       dbb   the Diverse Branch Block     repvgg   the RepVGG block,
             each with its online form
switch       ConvSwitch: every conv site of a model as one kind; the table of kinds
"""
