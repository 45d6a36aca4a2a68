"""segzoo.compiling: what a `compile` setting means, shared by train.compile, deploy mode and the
benchmarks; misspelt names fail when the setting is read."""

import pytest
import torch
from torch import nn

from segzoo.compiling import compile_kwargs, compile_module


def test_settings_map_to_torch_compile_arguments():
    assert compile_kwargs(False) is None and compile_kwargs(None) is None
    assert compile_kwargs(True) == {} and compile_kwargs("default") == {}
    assert compile_kwargs("reduce-overhead") == {"mode": "reduce-overhead"}
    assert compile_kwargs("max-autotune-no-cudagraphs") == {"mode": "max-autotune-no-cudagraphs"}
    assert compile_kwargs("backend:eager") == {"backend": "eager"}
    assert compile_kwargs("backend:aot_eager") == {"backend": "aot_eager"}


@pytest.mark.parametrize("setting, words", [("fastest", "Unrecognized mode=fastest"),
                                            ("backend:nonesuch", "nonesuch"),
                                            (3, "must be true, false")])
def test_unknown_settings_name_themselves_and_the_accepted_forms(setting, words):
    with pytest.raises(ValueError, match=words) as exc:
        compile_kwargs(setting)
    assert repr(setting) in str(exc.value) and "backend:<name>" in str(exc.value)
    with pytest.raises(ValueError):
        compile_module(nn.Linear(2, 2), setting)


def test_compile_module_runs_the_same_function_with_shared_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    assert compile_module(model, False) is model
    compiled = compile_module(model, "backend:eager")
    assert type(compiled).__name__ == "OptimizedModule" and compiled is not model
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(compiled(x), model(x))
    with torch.no_grad():
        model[2].bias.add_(1.0)  # the compiled module holds the same parameters, not a copy
    assert torch.equal(compiled(x), model(x))
