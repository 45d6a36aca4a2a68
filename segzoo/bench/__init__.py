"""Speed benchmarks of the zoo: ``segzoo bench`` (see docs/benchmarks.md).

* :mod:`segzoo.bench.runner`: :func:`run_benchmark` / :class:`BenchSettings`;
* :mod:`segzoo.bench.worker`: one measurement in a fresh process;
* :mod:`segzoo.bench.peers`: torchvision / smp models paired with ours;
* :mod:`segzoo.bench.flops`, :mod:`segzoo.bench.machine`, :mod:`segzoo.bench.timing`,
  :mod:`segzoo.bench.report`.
"""

from segzoo.bench.runner import BenchSettings, run_benchmark

__all__ = ["BenchSettings", "run_benchmark"]
