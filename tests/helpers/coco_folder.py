"""A synthetic COCO folder (instances json with polygons, a crowd RLE and a degenerate box;
panoptic PNGs and json) and the small image writers the dataset tests share."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

# For tests that load make_coco's folder for another purpose: its degenerate box is dropped with a
# UserWarning, which test_coco_instances_labels_crowd_and_semantic_map asserts.
ignore_dropped_box = pytest.mark.filterwarnings("ignore:.*zero-width or zero-height box are dropped:UserWarning")


def save_rgb(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def polygon(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def make_coco(root, split="val2017"):
    """3 images (one without annotations) with polygons, an uncompressed crowd RLE, and panoptic."""
    h, w = 24, 32
    images = [{"id": 42, "file_name": "000000000042.jpg", "height": h, "width": w},
              {"id": 7, "file_name": "000000000007.jpg", "height": h, "width": w},
              {"id": 99, "file_name": "000000000099.jpg", "height": h, "width": w}]
    for i, im in enumerate(images):
        save_rgb(root / split / im["file_name"], h, w, i)
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[16:24, 0:10] = 1
    crowd_rle = mask_utils.encode(crowd)
    counts = [int(c) for c in rle_counts(crowd)]
    cats = [{"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"}]
    anns = [
        {"id": 1, "image_id": 7, "category_id": 18, "segmentation": polygon(2, 2, 12, 10),
         "bbox": [2, 2, 10, 8], "area": 80, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "segmentation": polygon(4, 4, 8, 8),
         "bbox": [4, 4, 4, 4], "area": 16, "iscrowd": 0},  # small, on top of the dog
        {"id": 3, "image_id": 7, "category_id": 1, "segmentation": {"size": [h, w], "counts": counts},
         "bbox": [0, 16, 10, 8], "area": 80, "iscrowd": 1},
        {"id": 4, "image_id": 42, "category_id": 3, "segmentation": polygon(20, 5, 30, 15),
         "bbox": [20, 5, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 5, "image_id": 42, "category_id": 3, "segmentation": polygon(1, 1, 1, 5),
         "bbox": [1, 1, 0, 4], "area": 0, "iscrowd": 0},  # degenerate: dropped
    ]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    assert mask_utils.area(crowd_rle) == 80
    # panoptic: image 7 holds a dog (thing), a crowd of persons and a "grass" stuff segment
    pan_cats = [{"id": 18, "name": "dog", "isthing": 1}, {"id": 1, "name": "person", "isthing": 1},
                {"id": 124, "name": "grass", "isthing": 0}]
    ids = np.zeros((h, w), np.int64)
    ids[2:10, 2:12] = 1000
    ids[16:24, 0:10] = 70000
    ids[:, 20:] = 300
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    (root / "annotations" / f"panoptic_{split}").mkdir()
    Image.fromarray(rgb).save(root / "annotations" / f"panoptic_{split}" / "000000000007.png")
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "annotations" / f"panoptic_{split}" / "000000000042.png")
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "annotations" / f"panoptic_{split}" / "000000000099.png")
    segs = [{"id": 1000, "category_id": 18, "iscrowd": 0, "bbox": [2, 2, 10, 8], "area": 80},
            {"id": 70000, "category_id": 1, "iscrowd": 1, "bbox": [0, 16, 10, 8], "area": 80},
            {"id": 300, "category_id": 124, "iscrowd": 0, "bbox": [20, 0, 12, 24], "area": 288}]
    pan = {"images": images, "categories": pan_cats,
           "annotations": [{"image_id": 7, "file_name": "000000000007.png", "segments_info": segs},
                           {"image_id": 42, "file_name": "000000000042.png", "segments_info": []},
                           {"image_id": 99, "file_name": "000000000099.png", "segments_info": []}]}
    (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(pan))
    return root


def rle_counts(mask):
    flat = mask.ravel(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts
