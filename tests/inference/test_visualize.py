"""Instance overlays: one colour per instance for its mask and box, captions, thresholds."""

import numpy as np
import torch

from segzoo.visualize import draw_instances, instance_colors


def prediction():
    masks = torch.zeros(3, 1, 48, 64)
    masks[0, 0, 4:20, 4:24] = 0.9
    masks[1, 0, 26:44, 34:60] = 0.8
    masks[2, 0] = 1.0
    return {"boxes": torch.tensor([[4.0, 4, 24, 20], [34, 26, 60, 44], [0, 0, 64, 48]]),
            "labels": torch.tensor([1, 2, 3]), "scores": torch.tensor([0.95, 0.7, 0.1]), "masks": masks}


def test_instance_colors_are_distinct():
    colors = instance_colors(12)
    assert len(set(colors)) == 12 and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)


def test_draw_instances_colours_each_instance_and_leaves_out_low_scores():
    image = torch.full((3, 48, 64), 128, dtype=torch.uint8)
    out = draw_instances(image, prediction(), ["background", "circle", "square", "triangle"],
                         score_threshold=0.5, alpha=0.5)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    c0, c1 = (np.array(c) for c in instance_colors(2))
    blend = lambda c: np.round(0.5 * 128 + 0.5 * c)  # noqa: E731
    # mask interiors blended with their own colour (away from the boxes' outlines and captions)
    assert np.abs(out[18, 20].astype(int) - blend(c0)).max() <= 1
    assert np.abs(out[40, 50].astype(int) - blend(c1)).max() <= 1
    # the boxes' outlines in the instance's colour
    assert (out[20, 10] == c0).all() and (out[44, 45] == c1).all()
    # the low-score detection over the whole image (score 0.1) is left out: background untouched
    assert (out[30, 10] == 128).all()


def test_draw_instances_without_detections_returns_the_image():
    image = torch.randint(0, 255, (3, 16, 20), dtype=torch.uint8)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 16, 20)}
    assert (draw_instances(image, empty, ["bg"]) == image.permute(1, 2, 0).numpy()).all()
