"""U-Net: the paper's size and geometry, both paddings, the encoder-swappable variant."""

import numpy as np
import pytest
import torch

import segzoo
from segzoo.models.segmentors.unet import mirror_pad, valid_output_size


def test_original_unet_parameter_count():
    model = segzoo.build_model("unet", num_classes=2)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 31.0e6) / 31.0e6 < 0.01, n  # the paper's ~31.0M (31,031,810)
    assert model.backbone.out_channels == (64, 128, 256, 512, 1024)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # as in 2015


def test_valid_padding_maps_572_to_388():
    model = segzoo.build_model("unet", num_classes=2, padding="valid", base_channels=4).eval()
    assert model.output_size(572) == 388 and valid_output_size(572) == 388
    with torch.no_grad():
        assert model.forward_valid(torch.randn(1, 3, 572, 572)).shape == (1, 2, 388, 388)
        # the contract: logits at the input size, the missing context mirrored (paper Fig. 2)
        assert model(torch.randn(1, 3, 97, 131)).shape == (1, 2, 97, 131)


def test_valid_geometry_is_reported():
    model = segzoo.build_model("unet", num_classes=2, padding="valid", base_channels=4).eval()
    sizes = model.valid_input_sizes(600)
    assert sizes[0] == 188 and 572 in sizes and set(np.diff(sizes)) == {16}
    assert [model.output_size(s) for s in (188, 204, 572)] == [4, 20, 388]
    assert model.output_size(573) is None and model.output_size(100) is None
    assert model.input_size_for(388) == 572 and model.input_size_for(389) == 588
    with pytest.raises(ValueError, match="takes tile sides 188 \\+ 16k.*572 -> 388.*nearest: .*572, 588"):
        model.forward_valid(torch.randn(1, 3, 580, 572))
    same = segzoo.build_model("unet", num_classes=2, base_channels=4)
    assert same.output_size(97) == 97 and same.min_input_size == 16


def test_mirror_pad_reflects_like_numpy_even_beyond_the_image():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    ref = np.pad(x[0, 0].numpy(), ((5, 7), (6, 2)), mode="reflect")
    assert np.array_equal(mirror_pad(x, 5, 7, 6, 2)[0, 0].numpy(), ref)


def test_valid_forward_is_the_raw_network_on_the_mirror_extended_tile():
    torch.manual_seed(0)
    model = segzoo.build_model("unet", num_classes=3, padding="valid", base_channels=4).eval()
    x = torch.randn(1, 3, 50, 70)
    tile_h, tile_w = model.input_size_for(50), model.input_size_for(70)  # 236 (52 out), 268 (84)
    assert (tile_h, tile_w) == (236, 268)
    with torch.no_grad():
        full = model(x)
        raw = model.forward_valid(mirror_pad(x, 92, tile_h - 50 - 92, 92, tile_w - 70 - 92))
    assert full.shape[-2:] == (50, 70) and raw.shape[-2:] == (52, 84)
    assert torch.allclose(full, raw[..., :50, :70], atol=1e-6)  # output pixel j is input pixel j


def test_encoder_swappable_unet():
    model = segzoo.build_model("unet", num_classes=3, backbone="resnet34")
    assert [b.conv2[0].out_channels for b in model.decode_head.blocks] == [256, 128, 64, 32, 16]
    assert model.decode_head.output_stride == 1  # last block without skip, up to stride 1
    assert model.decode_head.blocks[0].upsampling == "nearest"
    with pytest.raises(ValueError, match="valid.*original encoder"):
        segzoo.build_model("unet", num_classes=3, backbone="resnet18", padding="valid")
    with pytest.raises(ValueError, match="one width per skip"):
        segzoo.build_model("unet", num_classes=3, backbone="resnet18", decoder_channels=(8, 8))
