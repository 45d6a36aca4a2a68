import pytest
import torch
import torch.nn.functional as F

from segzoo.losses import LossContext, build_loss


def test_matches_torch_cross_entropy_with_ignore_index():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, :2] = 255
    loss = build_loss("cross_entropy", LossContext(4, 255))
    assert torch.allclose(loss(logits, target), F.cross_entropy(logits, target, ignore_index=255))


def test_class_weights_match_torch_and_validate_length():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[1, 0] = 255
    w = [0.2, 1.0, 3.0]
    loss = build_loss("cross_entropy", LossContext(3), class_weights=w)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255)
    assert torch.allclose(loss(logits, target), ref)
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        build_loss("cross_entropy", LossContext(3), class_weights=[1.0, 2.0])


def test_all_ignored_gives_zero_not_nan_and_keeps_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = build_loss("cross_entropy", LossContext(3))(logits, torch.full((1, 4, 4), 255))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
