"""The authors' PyTorch checkpoints (DingXiaoH/ACNet, DingXiaoH/DiverseBranchBlock)
as this project's variables and runs.

A subpackage of its own: it knows another framework's files and module names,
which nothing else here does, and it writes a run's workdir, so it sits above
`training` (and imports torch only to read a .pth file: torch is an extra).

    files     a .pth (through torch) or .hdf5 (h5py) file -> {key: numpy array}, as the authors save
    layouts   the authors' module names of every conv site, BN and dense layer of our models
    convert   their state dict -> params and batch statistics of a model and kind; a workdir
"""
