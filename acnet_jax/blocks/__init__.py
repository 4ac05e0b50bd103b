"""Conv blocks and their fusion rules, plain flax: the ops XLA:CPU computes
better in another form (ReLU, pooling, BN's training op) come from
`acnet_jax.xla_cpu.dispatch`.

primitives   BN, conv and symmetric padding as the authors use them
batch_norm   flax's BatchNorm, its training op `xla_cpu.dispatch`'s
algebra      kernel algebra: fold BN, centre kernels, 1x1-then-KxK, pooling and identity kernels
kinds        BlockKind: how fusion recognises a block and turns it into one conv
conv_bn      ConvBN (the baseline) and ConvBias (the deploy form)
online       what every kind's online form shares: its branches built into one kernel in the
             step, one conv, one BN (OREPA)
acb          the ACB (ACNet)       dbb   the Diverse Branch Block     repvgg   the RepVGG block,
             each with its online form
switch       ConvSwitch: every conv site of a model as one kind; the table of kinds
"""
