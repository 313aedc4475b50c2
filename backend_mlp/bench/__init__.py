"""backend_mlp against PyTorch on the identical workload (``scripts/benchmark.py``, :mod:`backend_mlp.cli.bench`).

Same network, initial weights, mini-batches (the training loop's order), SGD
steps, dtype and hardware on every side; the sides alternate and medians are
reported.  Modules: :mod:`.workloads` (what is timed, the shared data and the
batch order), :mod:`.backend_mlp_side` (``train`` and the functional API),
:mod:`.torch_side` (PyTorch eager and ``torch.compile``), :mod:`.runner`
(warm-up, checks, alternating timing, ratios), :mod:`.memory` (peak memory in
fresh processes), :mod:`.table` (the text table).  PyTorch is imported only
when a benchmark runs.
"""
