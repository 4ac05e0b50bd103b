"""Training and evaluating a run.

config         every knob at its default, and the check of a config
presets        one record per model and recipe (the original code's try_args), as configs
optim          SGD as torch runs it: schedules, weight decay, bias learning rate
steps          the pure train and eval steps
trainer        what one run compiles on one mesh: model, feed, steps
loop           the jobs: train_and_evaluate (the loop), evaluate
workdir        what a run leaves in its workdir, and reading it back
lock           one run per workdir: WORKDIR/.lock
write_failures a failed write (a full disk) as one paragraph
held_back      what background writes report meanwhile, held back from the output
checkpointing  Orbax checkpoints with a fingerprint of the values; reading one back
read_errors    a failed read: damage (the bytes) or a fault (the machine)
restoring      which checkpoint a run restores, decided once for all processes
os_errors      the OS error behind an Orbax or tensorstore error
stopping       SIGTERM/SIGINT as a stop every process agrees on
cluster        whether a run is one of several processes (JAX's cluster detection)
metrics        metrics.jsonl, TensorBoard events, eval.json
qat            int8-aware fine-tuning of the fused model (qwix; the onnx extra)
"""
