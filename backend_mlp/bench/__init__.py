"""backend_mlp against its fastest peers on the identical workload (``backend-mlp bench``).

The options are in :mod:`backend_mlp.cli.bench`.

Same network, initial weights, mini-batches (the training loop's order), SGD
steps, dtype and hardware on every side; the sides alternate and medians are
reported.  Modules: :mod:`.workloads` (what is timed, the shared data, the
batch order and the sides' labels), :mod:`.backend_mlp_side` (``train`` on any
backend, eager or compiled, and the functional API), :mod:`.torch_side`
(PyTorch eager and ``torch.compile``), :mod:`.jax_side` (a hand-written
``jax.jit`` step), :mod:`.numpy_side` (the hand-written NumPy yardstick),
:mod:`.sklearn_side` (``MLPClassifier`` by ``partial_fit``), :mod:`.runner`
(warm-up, checks, alternating timing, ratios), :mod:`.bound` (the one-core
lower bound measured on the machine), :mod:`.memory` (peak memory in fresh
processes), :mod:`.table` (the text tables).  PyTorch, JAX and scikit-learn
are imported only when a benchmark runs, and a missing one skips its sides.
"""
