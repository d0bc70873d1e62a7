"""The benchmark's memory probe counts what a piece of work allocates, not the code it runs."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from bench.private_memory import measure
import numpy as np
import torch
x = torch.randn(8, 3, 16, 16, requires_grad=True)
w = torch.randn(4, 3, 3, 3, requires_grad=True)
kept = []
out = {
    "nothing": measure(lambda: None),
    "array_32mib": measure(lambda: kept.append(np.ones(8 * 2**20, dtype=np.float32))),
    # a transient: allocated, touched and freed inside the work; only the peak remembers it
    "transient_48mib": measure(lambda: np.ones(12 * 2**20, dtype=np.float32).sum()),
    # code only: a first convolution forward and backward pages in MiBs of libtorch's code,
    # while its tensors are a few KiB
    "first_conv": measure(lambda: torch.nn.functional.conv2d(x, w).sum().backward()),
}
print(json.dumps(out))
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/self/status")
def test_measure_counts_allocations_and_transients_but_not_code_pages():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(SCRIPTS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if not res["nothing"]["code_pages_excluded"]:
        pytest.skip("this kernel has no MADV_POPULATE_READ (Linux < 5.14)")
    assert res["nothing"]["delta_mib"] < 2
    assert 31 <= res["array_32mib"]["delta_mib"] <= 36
    assert 47 <= res["transient_48mib"]["delta_mib"] <= 52
    assert res["transient_48mib"]["anon_end_mib"] < 4  # freed again: only the peak saw it
    assert res["first_conv"]["delta_mib"] < 2
    assert res["first_conv"]["file_pages_added_mib"] < 0.5
