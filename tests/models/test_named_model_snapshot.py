"""The named semantic models are unchanged: state-dict keys and shapes, parameter counts, loss
weights and outputs for a fixed seed equal those recorded in tests/models/named_models.json (written
by ``python tests/helpers/named_model_snapshot.py`` before the models were rebuilt over the composition)."""

import json
import math

import pytest
from helpers.named_model_snapshot import CASES, FILE, snapshot

RECORDED = json.loads(FILE.read_text())


def test_every_case_is_recorded():
    assert set(RECORDED) == {c[0] for c in CASES}


@pytest.mark.parametrize("case,name,kwargs,run", CASES, ids=[c[0] for c in CASES])
def test_named_model_matches_its_recorded_snapshot(case, name, kwargs, run):
    want, got = RECORDED[case], snapshot(name, kwargs, run)
    assert got["state_dict_modules"] == want["state_dict_modules"]
    assert got["state_dict_sha256"] == want["state_dict_sha256"], "same modules, other keys or shapes"
    assert got["params"] == want["params"]
    assert got["loss_weights"] == want["loss_weights"]
    assert got["class"] == want["class"]
    if not run:
        return
    outputs = [("eval", got["eval"], want["eval"])]
    outputs += [(k, got["train"][k], want["train"][k]) for k in want["train"]]
    assert set(got["train"]) == set(want["train"])
    for what, g, w in outputs:
        assert g[0] == w[0], what  # shape
        for a, b in zip(g[1:], w[1:]):  # sum, |sum|, sum of squares: equal up to float rounding
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-4 * max(1.0, w[2])), (what, a, b)
