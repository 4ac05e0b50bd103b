"""The authors' PyTorch models and training step, re-written from their
published code for checks: imported by the tests, the benchmarks
(benchmarks/) and the lockstep, never by acnet_jax. Needs the torch extra
(pip install -e '.[torch]').

    blocks        ACBlock (DingXiaoH/ACNet acnet/acb.py), DiverseBranchBlock and its parts
                  (DingXiaoH/DiverseBranchBlock diversebranchblock.py, dbb_transforms.py)
    acnet_models  ACNet's builders (builder.py, acnet/acnet_builder.py) and base_model/
                  (cfqk, vgg, stagewise_resnet, wrn, resnet, mobilenetv1)
    dbb_models    DBB's builder (convnet_utils.py) and its resnet.py and mobilenet.py
    saving        their weights as they save them (.pth of their engines, .hdf5, the
                  deploy conversions), and random but valid weights
    checkpoints   a model of a repository and kind with random weights, saved as they save it
    training      their optimizer and schedule (ndp_train.py) in lockstep with ours

Module and key names, paddings, crops, stems and heads are theirs; where their
code as published does not run, the change is the smallest that makes it run
and is marked "Fixed:".
"""
