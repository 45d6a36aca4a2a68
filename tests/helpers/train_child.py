"""``segzoo`` command line in a child process (subprocess and torchrun tests), with the test-only
``tiny_seg`` model registered and one intra-op thread (so runs are comparable bit for bit).

Environment: ``SEGZOO_TEST_SIGNAL_AT=N:SIGNAME[:group]`` makes the process send that signal to itself
(or to its process group) during its N-th training forward pass (a kill at a known point of
training, without races).
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

torch.set_num_threads(1)

import tiny_model  # noqa: E402

from segzoo.cli import main  # noqa: E402

spec = os.environ.get("SEGZOO_TEST_SIGNAL_AT")
if spec:
    n, name, *group = spec.split(":")
    tiny_model.signal_at(int(n), getattr(signal, name), group=group == ["group"])
sys.exit(main(sys.argv[1:]))
