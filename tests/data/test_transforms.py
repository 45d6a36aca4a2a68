import pytest
import torch
from torchvision import tv_tensors

from segzoo.data import IMAGENET_MEAN, IMAGENET_STD, build_pipeline
from segzoo.data.transforms import denormalize
from segzoo.errors import RegistryError


def coded_sample(h=40, w=56):
    """An image whose red channel encodes the column and green the row, and a mask of the
    same code: after any geometric transform the two must still agree pixel by pixel."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([xs * 4, ys * 4, torch.zeros_like(xs)]).to(torch.uint8)
    mask = (ys // 8) * 8 + (xs // 8)  # block ids
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "meta": {"k": 1}}


def test_flip_and_crop_keep_image_and_mask_aligned():
    pipe = build_pipeline([{"name": "random_flip", "p": 1.0}, {"name": "random_crop", "size": [24, 32]}],
                          mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    out = pipe(coded_sample())
    img, mask = out["image"], out["mask"]
    assert img.shape == (3, 24, 32) and mask.shape == (24, 32) and out["meta"] == {"k": 1}
    cols = (img[0] * 255 / 4).round().long()
    rows = (img[1] * 255 / 4).round().long()
    assert torch.equal((rows // 8) * 8 + cols // 8, mask.as_subclass(torch.Tensor))
    assert (cols[:, 0] > cols[:, -1]).all()  # flipped: columns run right to left


def test_crop_larger_than_image_pads_mask_with_ignore_index():
    pipe = build_pipeline([{"name": "random_crop", "size": [64, 64]}], ignore_index=255)
    out = pipe(coded_sample(40, 56))
    mask = out["mask"]
    assert mask.shape == (64, 64)
    assert (mask == 255).sum() == 64 * 64 - 40 * 56
    assert mask.dtype == torch.int64


def test_random_resize_keeps_ratio_and_mask_is_nearest():
    pipe = build_pipeline([{"name": "random_resize", "scale": [40, 56], "ratio_range": [2.0, 2.0]}])
    out = pipe(coded_sample())
    assert out["image"].shape[-2:] == (80, 112) and out["mask"].shape == (80, 112)
    assert set(torch.unique(out["mask"]).tolist()) <= set(torch.unique(coded_sample()["mask"]).tolist())


def test_normalisation_and_denormalize_round_trip():
    s = coded_sample()
    out = build_pipeline([])(s)
    assert out["image"].dtype == torch.float32
    back = denormalize(out["image"].unsqueeze(0), IMAGENET_MEAN, IMAGENET_STD)[0]
    assert torch.equal(back, s["image"].as_subclass(torch.Tensor))


def test_unknown_transform_name():
    with pytest.raises(RegistryError, match="random_flip"):
        build_pipeline([{"name": "random_flipp"}])


def test_random_resize_scale_is_height_width_for_non_square_targets():
    # a 40x56 image fitted into [20, 100] (H, W): the height limits, ratio 0.5 -> 20x28
    pipe = build_pipeline([{"name": "random_resize", "scale": [20, 100], "ratio_range": [1.0, 1.0]}])
    assert pipe(coded_sample())["image"].shape[-2:] == (20, 28)


def test_scale_jitter_crop_and_flip_keep_instance_boxes_on_their_masks():
    """Boxes and masks move together (tv_tensors); instances cropped away are dropped."""
    from segzoo.data import ShapesDataset
    from segzoo.data.instances import boxes_from_masks

    ds = ShapesDataset(split="val", num_images=12, with_instances=True, min_shapes=3, max_shapes=4)
    ds.transforms = build_pipeline([{"name": "random_resize", "scale": [64, 64], "ratio_range": [0.5, 2.0]},
                                    {"name": "random_crop", "size": [48, 48]}, {"name": "random_flip", "p": 0.5}],
                                   mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    total, dropped = 0, 0
    for i in range(len(ds)):
        s = ds[i]
        inst = s["instances"]
        n = len(inst["labels"])
        assert s["image"].shape[-2:] == (48, 48) and inst["masks"].shape == (n, 48, 48)
        assert len(inst["boxes"]) == len(inst["iscrowd"]) == n
        # after a crop each box is the tight box of its mask (detectron2's recompute_boxes)
        assert torch.equal(inst["boxes"].as_subclass(torch.Tensor), boxes_from_masks(inst["masks"]))
        assert (inst["masks"].sum((1, 2)) > 0).all()
        assert set(s["mask"][inst["masks"].any(0) == 0].unique().tolist()) <= {0, 255}
        total, dropped = total + n, dropped + s["meta"].get("dropped_boxes", 0)
    assert total > 0 and dropped > 0  # some shapes were cropped away and dropped with their masks
