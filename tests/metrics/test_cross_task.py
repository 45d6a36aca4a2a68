"""Cross-task conversions on hand-made cases, and connected components against a BFS reference."""

from collections import deque

import numpy as np
import pytest
import torch

from segzoo.metrics.cross_task import (
    connected_components,
    instances_to_semantic,
    semantic_to_instances,
)


def bfs_components(lab, fg, connectivity):
    """Reference: flood fill in raster order."""
    h, w = lab.shape
    out = np.zeros((h, w), int)
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    if connectivity == 8:
        steps += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    n = 0
    for y in range(h):
        for x in range(w):
            if fg[y, x] and not out[y, x]:
                n += 1
                out[y, x] = n
                queue = deque([(y, x)])
                while queue:
                    cy, cx = queue.popleft()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and fg[ny, nx] and not out[ny, nx] \
                                and lab[ny, nx] == lab[cy, cx]:
                            out[ny, nx] = n
                            queue.append((ny, nx))
    return out, n


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_bfs(seed, connectivity):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 3, (int(rng.integers(1, 30)), int(rng.integers(1, 30))))
    fg = lab > 0
    got, n = connected_components(lab, foreground=fg, connectivity=connectivity)
    ref, n_ref = bfs_components(lab, fg, connectivity)
    assert n == n_ref
    np.testing.assert_array_equal(got, ref)


def test_connected_components_of_a_serpentine_in_one_piece():
    s = np.zeros((64, 64), int)
    s[::2] = 1
    for r in range(1, 64, 2):
        s[r, 63 if (r // 2) % 2 == 0 else 0] = 1
    comp, n = connected_components(s, foreground=s > 0, connectivity=4)
    assert n == 1 and (comp[s > 0] == 1).all()


def test_instances_to_semantic_pastes_by_descending_score():
    m = torch.zeros(3, 1, 6, 6)
    m[0, 0, 0:4, 0:4] = 0.9  # class 1, score 0.6
    m[1, 0, 2:6, 2:6] = 0.8  # class 2, score 0.9: wins the overlap
    m[2, 0, 0:2, 4:6] = 0.9  # class 3, score 0.3: below the threshold
    pred = {"labels": torch.tensor([1, 2, 3]), "scores": torch.tensor([0.6, 0.9, 0.3]), "masks": m,
            "boxes": torch.zeros(3, 4)}
    sem = instances_to_semantic(pred, (6, 6), score_threshold=0.5)
    expected = torch.zeros(6, 6, dtype=torch.long)
    expected[0:4, 0:4] = 1
    expected[2:6, 2:6] = 2
    assert torch.equal(sem, expected)
    # thing_classes: label i is semantic class thing_classes[i - 1]; background elsewhere
    sem = instances_to_semantic(pred, (6, 6), score_threshold=0.0, thing_classes=[11, 12, 13], background=5)
    assert sem[0, 5] == 13 and sem[5, 0] == 5 and sem[3, 3] == 12
    empty = {"labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0),
             "masks": torch.zeros(0, 1, 6, 6), "boxes": torch.zeros(0, 4)}
    assert (instances_to_semantic(empty, (6, 6)) == 0).all()


def test_semantic_to_instances_components_boxes_and_mean_probability():
    probs = torch.zeros(3, 8, 10)
    probs[0] = 1.0
    labels = torch.zeros(8, 10, dtype=torch.long)
    labels[1:3, 1:4] = 1  # blob A, class 1 (6 px)
    labels[5:8, 6:10] = 1  # blob B, class 1 (12 px)
    labels[4, 0] = 2  # one pixel of class 2
    for c in (1, 2):
        probs[0][labels == c] = 0.0
        probs[c][labels == c] = 1.0
    probs[1, 1, 1], probs[0, 1, 1] = 0.6, 0.4  # A's mean class-1 probability: (5 + 0.6) / 6
    inst = semantic_to_instances(probs)
    # sorted by score, ties in raster order of the components: the dot (1.0), B (1.0), A
    assert inst["labels"].tolist() == [2, 1, 1]
    assert inst["scores"].tolist() == pytest.approx([1.0, 1.0, 5.6 / 6])
    assert inst["boxes"].tolist() == [[0, 4, 1, 5], [6, 5, 10, 8], [1, 1, 4, 3]]
    assert inst["masks"].shape == (3, 8, 10) and inst["masks"].sum((1, 2)).tolist() == [1, 12, 6]
    # min_area drops the dot; thing_classes [2] keeps only class 2, as label 1
    assert semantic_to_instances(probs, min_area=2)["labels"].tolist() == [1, 1]
    only = semantic_to_instances(probs, thing_classes=[2])
    assert only["labels"].tolist() == [1] and only["boxes"].tolist() == [[0, 4, 1, 5]]
    none = semantic_to_instances(torch.stack([torch.ones(4, 4), torch.zeros(4, 4)]))
    assert none["boxes"].shape == (0, 4) and none["masks"].shape == (0, 4, 4)


def test_diagonal_neighbours_join_with_8_connectivity_only():
    probs = torch.zeros(2, 4, 4)
    probs[0] = 1
    for y, x in [(0, 0), (1, 1), (2, 2)]:
        probs[:, y, x] = torch.tensor([0.0, 1.0])
    assert len(semantic_to_instances(probs)["labels"]) == 1
    assert len(semantic_to_instances(probs, connectivity=4)["labels"]) == 3


def test_components_are_fast_enough_for_512px():
    import time
    rng = np.random.default_rng(0)
    lab = np.kron(rng.integers(0, 5, (64, 64)), np.ones((8, 8), int))
    t = time.perf_counter()
    connected_components(lab, foreground=lab > 0)
    assert time.perf_counter() - t < 5.0  # ~0.1 s measured; generous for a loaded machine
