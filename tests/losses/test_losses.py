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


def test_median_frequency_weights_by_hand():
    from segzoo.losses import median_frequency_weights

    # class 0: 60 px over 2 images of 50 px -> 0.6; class 1: 10 px in one 50 px image -> 0.2;
    # class 2: 30 px in images totalling 100 px -> 0.3; class 3 never appears
    w = median_frequency_weights([60, 10, 30, 0], [100, 50, 100, 0])
    assert w == pytest.approx([0.3 / 0.6, 0.3 / 0.2, 1.0, 0.0])


def test_label_statistics_and_median_frequency_from_the_training_set():
    from segzoo.losses import label_statistics

    class Masks:
        masks = [torch.tensor([[0, 0], [1, 255]]), torch.tensor([[0, 2], [2, 2]])]

        def __len__(self):
            return 2

        def load(self, i):
            return {"mask": self.masks[i]}

    cp, ip = label_statistics(Masks(), 3, 255)
    assert cp == [3, 1, 3] and ip == [7, 3, 4]  # ignored pixel counts for no image total
    calls = []

    def stats():
        calls.append(1)
        return cp, ip

    loss = build_loss("cross_entropy", LossContext(3, 255, label_stats=stats), class_weights="median_frequency")
    freq = torch.tensor([3 / 7, 1 / 3, 3 / 4])
    assert torch.allclose(loss.weight, freq.median() / freq) and calls == [1]
    with pytest.raises(ValueError, match="needs the training set"):
        build_loss("cross_entropy", LossContext(3), class_weights="median_frequency")


def test_ohem_keeps_hard_pixels_only():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 10  # confident and right ...
    logits[0, :, :2] = 0.0  # ... except 16 uniform pixels (p = 1/3)
    target[1, 0, 0] = 255
    hard = torch.zeros_like(target, dtype=torch.bool)
    hard[0, :2] = True
    ref = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[hard].mean()
    ohem = build_loss("ohem_cross_entropy", LossContext(3), thresh=0.7, min_kept=4)
    assert torch.allclose(ohem(logits, target), ref)
    # too few below the threshold: the min_kept * B hardest are kept instead
    top = build_loss("ohem_cross_entropy", LossContext(3), thresh=0.7, min_kept=10)(logits, target)
    pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none").flatten()
    assert torch.allclose(top, pixel.topk(20).values.mean())
    no_thresh = build_loss("ohem_cross_entropy", LossContext(3), thresh=None, min_kept=8)(logits, target)
    assert torch.allclose(no_thresh, ref)  # exactly the 16 uniform pixels are the hardest
    everything = build_loss("ohem_cross_entropy", LossContext(3), thresh=1.0, min_kept=1)
    assert torch.allclose(everything(logits, target), F.cross_entropy(logits, target, ignore_index=255))


def test_dice_by_hand_and_ignore_index():
    logits = torch.full((1, 2, 1, 2), -30.0)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = 30.0  # predicts [0, 1]
    dice = build_loss("dice", LossContext(2), smooth=0.0)
    assert dice(logits, torch.tensor([[[0, 1]]])).item() == pytest.approx(0.0, abs=1e-6)
    # target [0, 0]: class 0 dice = 2*1/(1+2) , class 1 dice = 0/(1+0) -> loss 1 - (2/3 + 0)/2
    assert dice(logits, torch.tensor([[[0, 0]]])).item() == pytest.approx(1 - 1 / 3, abs=1e-6)
    # ignoring the wrong pixel leaves a perfect prediction
    assert dice(logits, torch.tensor([[[0, 255]]])).item() == pytest.approx(0.5, abs=1e-6)  # class 1 absent
    smooth = build_loss("dice", LossContext(2))
    assert smooth(logits, torch.tensor([[[0, 255]]])).item() == pytest.approx(0.0, abs=1e-6)
    x = torch.randn(2, 2, 3, 3, requires_grad=True)
    smooth(x, torch.randint(0, 2, (2, 3, 3))).backward()
    assert x.grad.abs().sum() > 0


def test_weighted_loss_list_from_config(tiny_config):
    from segzoo.config import load_config
    from segzoo.errors import ConfigError
    from segzoo.losses import build_losses

    cfg = load_config(tiny_config, ["loss=[{name: cross_entropy, weight: 1.0}, {name: dice, weight: 0.5}]"])
    losses = build_losses(cfg.loss, LossContext(4))
    logits, target = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    terms = losses(logits, target)
    assert set(terms) == {"cross_entropy", "dice"}
    assert torch.allclose(terms["dice"], 0.5 * build_loss("dice", LossContext(4))(logits, target))
    with pytest.raises(ConfigError, match=r"'loss.1.weight'.*must be float"):
        load_config(tiny_config, ["loss=[{name: cross_entropy}, {name: dice, weight: heavy}]"])
    with pytest.raises(ConfigError, match=r"unknown key 'loss.0.smoth'"):
        load_config(tiny_config, ["loss=[{name: dice, smoth: 1.0}]"])
    with pytest.raises(ConfigError, match="median_frequency"):
        load_config(tiny_config, ["loss.class_weights=median"])
