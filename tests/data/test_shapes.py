import numpy as np
import torch

from segzoo.data import ShapesDataset


def test_deterministic_across_instances_and_distinct_across_splits_and_seeds():
    a, b = ShapesDataset(split="train", num_images=4), ShapesDataset(split="train", num_images=4)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    val = ShapesDataset(split="val", num_images=4)
    other = ShapesDataset(split="train", num_images=4, seed=1)
    assert not torch.equal(a[0]["image"], val[0]["image"])
    assert not torch.equal(a[0]["image"], other[0]["image"])
    # random access in any order gives the same sample
    assert torch.equal(ShapesDataset(num_images=4)[3]["image"], a[3]["image"])


def test_sample_format():
    s = ShapesDataset(num_images=2, size=(48, 80))[1]
    assert s["image"].shape == (3, 48, 80) and s["image"].dtype == torch.uint8
    assert s["mask"].shape == (48, 80) and s["mask"].dtype == torch.int64
    assert int(s["mask"].max()) < 4 and int(s["mask"].min()) >= 0
    assert s["meta"]["index"] == 1


def test_semantic_mask_equals_union_of_instance_masks():
    ds = ShapesDataset(num_images=20, size=(64, 64), with_instances=True, max_shapes=6)
    n_overlaps = 0
    for i in range(len(ds)):
        s = ds[i]
        inst = s["instances"]
        masks, labels = inst["masks"].bool(), inst["labels"]
        assert masks.shape[0] == labels.shape[0] >= 1
        # instance masks are disjoint (occlusion resolved) and each at least min_area
        assert int(masks.sum(0).max()) <= 1
        assert int(masks.flatten(1).sum(1).min()) >= ds.min_area
        rebuilt = (masks.long() * labels.view(-1, 1, 1)).sum(0)
        assert torch.equal(rebuilt, s["mask"].as_subclass(torch.Tensor))
        # boxes enclose their masks exactly (x2, y2 = last pixel + 1)
        for m, box in zip(masks, inst["boxes"]):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        _, inst_map, classes = ds.generate(i)
        n_overlaps += int(len(classes) > 1 and np.unique(inst_map).size - 1 == len(classes))
    assert n_overlaps > 0


def test_every_class_appears():
    ds = ShapesDataset(num_images=16)
    seen = torch.zeros(4, dtype=torch.bool)
    for i in range(len(ds)):
        seen[torch.unique(ds[i]["mask"])] = True
    assert seen.all()
