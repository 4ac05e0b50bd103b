"""Numbers, not tests: what `python -m acnet_jax.benchmark` measures (and the
timing loop and the results files the benchmarks/ scripts share).

    timing     the one timing loop (candidates interleaved round by round), compile time,
               XLA FLOPs, the matmul peak
    suite      train and eval steps of each conv kind, their parts, 1 vs N devices
    report     ratios between kinds, the printed table, its rows, the docs' profile table
    pipeline   the streaming input path: decoding throughput, a streamed train step
    profile    where a compiled step's time goes, per kind of op, from XLA's trace
    loop_overhead  what the training loop adds to the bare jitted step
    results    every benchmark's rows as data (results/benchmarks/<name>.jsonl), with the
               command, date, machine and versions; the docs' tables are made from them
    exported   a run's exported model: XLA beside ONNX Runtime float and int8
"""
