"""Mask R-CNN's batched mask pasting (segzoo.models.detectors.paste) against torchvision's loop."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

import segzoo
from segzoo.models.detectors.paste import paste_masks
from segzoo.models.detectors.transform import RCNNTransform


def detections_like(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks in 0..1 and boxes as Mask R-CNN returns them: clipped to the image, some of them
    touching its borders, thin (under a pixel) or empty."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, 28, 28, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.9, h * 0.9])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6]) + 1  # some past the border
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:5, 2:] = boxes[:5, :2] + 0.3  # thinner than a pixel
    boxes[5:8, 2:] = boxes[5:8, :2]  # empty
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    return masks, boxes


@pytest.mark.parametrize("h,w,chunk", [(61, 87, 1 << 25), (120, 45, 3000), (32, 32, 1)])
def test_paste_masks_equals_torchvision_paste_masks_in_image(h, w, chunk):
    masks, boxes = detections_like(60, h, w)
    ref = paste_masks_in_image(masks, boxes, (h, w))
    out = paste_masks(masks, boxes, (h, w), chunk_pixels=chunk)
    assert out.shape == ref.shape == (60, 1, h, w) and out.dtype == ref.dtype
    assert (out - ref).abs().max() <= 1e-5  # float rounding of a different multiply-add order
    assert torch.equal(out == 0, ref == 0)  # the same pixels inside each box
    assert ((ref > 0).flatten(1).sum(1) > 0).sum() >= 45  # most masks are not empty: not a vacuous test
    binary, ref_binary = out > 0.5, ref > 0.5
    near = (ref - 0.5).abs() <= 1e-5
    assert torch.equal(binary[~near], ref_binary[~near])


def test_paste_masks_keeps_dtype_handles_no_detections_and_rejects_bad_shapes():
    masks, boxes = detections_like(12, 40, 50)
    assert paste_masks(masks.double(), boxes.double(), (40, 50)).dtype == torch.float64
    assert paste_masks(masks[:0], boxes[:0], (40, 50)).shape == (0, 1, 40, 50)
    with pytest.raises(ValueError, match=r"\(N, 1, M, M\)"):
        paste_masks(masks[:, 0], boxes, (40, 50))
    with pytest.raises(ValueError, match=r"boxes must be \(12, 4\)"):
        paste_masks(masks, boxes[:3], (40, 50))
    with pytest.raises(ValueError, match="mask_paste"):
        RCNNTransform(64, 96, [0.5] * 3, [0.2] * 3, mask_paste="fast")
    transform = RCNNTransform(64, 96, [0.5] * 3, [0.2] * 3)
    with pytest.raises(ValueError, match=r"mask_paste must be one of .* got 'batch'"):
        transform.mask_paste = "batch"  # a later assignment is checked too, not silently "auto"
    assert transform.mask_paste == "auto"


def test_maskrcnn_detections_with_the_batched_paste_equal_torchvision_loop():
    torch.manual_seed(0)
    model = segzoo.build_model("maskrcnn", num_classes=4, backbone="resnet18", min_size=64, max_size=96,
                               fpn_channels=32, box_head_dim=64, mask_head_dim=16,
                               box_score_thresh=0.0, box_detections_per_img=30).eval()
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 64)]
    outs = {}
    for mode in ("loop", "batched"):
        model.transform.mask_paste = mode
        with torch.no_grad():
            outs[mode] = model(images)
    for loop, batched, img in zip(outs["loop"], outs["batched"], images):
        assert len(loop["boxes"]) > 10
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(loop[k], batched[k]), k
        assert batched["masks"].shape == (len(loop["boxes"]), 1, *img.shape[-2:])
        assert (batched["masks"] - loop["masks"]).abs().max() <= 1e-5
