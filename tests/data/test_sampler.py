"""The resumable training stream: batches are a pure function of (seed, position)."""

import itertools

import torch

from segzoo.data import ShapesDataset, build_pipeline, build_train_loader
from segzoo.data.sampler import SeededSamples, TrainingBatchSampler, seeded_rng, shard_indices


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_every_epoch_is_a_permutation_and_epochs_differ():
    s = TrainingBatchSampler(10, 5, seed=3)
    batches = take(s, 4)  # two epochs
    first = sorted(i for b in batches[:2] for i, _ in b)
    second = sorted(i for b in batches[2:] for i, _ in b)
    assert first == second == list(range(10))
    assert [i for b in batches[:2] for i, _ in b] != [i for b in batches[2:] for i, _ in b]
    assert len({seed for b in batches for _, seed in b}) == 20  # a fresh seed per draw
    plain = take(TrainingBatchSampler(10, 5, shuffle=False), 3)
    assert [i for i, _ in plain[2]] == [0, 1, 2, 3, 4]


def test_starting_at_a_position_continues_the_same_stream():
    full = [x for b in take(TrainingBatchSampler(7, 3, seed=1), 6) for x in b]  # spans epochs
    resumed = [x for b in take(TrainingBatchSampler(7, 3, seed=1, start=9), 3) for x in b]
    assert resumed == full[9:]


def test_rank_shards_of_a_global_batch_equal_one_process_batches():
    one = take(TrainingBatchSampler(9, 4, seed=5, start=4), 3)
    r0 = take(TrainingBatchSampler(9, 2, seed=5, rank=0, world_size=2, start=4), 3)
    r1 = take(TrainingBatchSampler(9, 2, seed=5, rank=1, world_size=2, start=4), 3)
    assert [a + b for a, b in zip(r0, r1)] == one


def test_seeded_rng_is_repeatable_and_leaves_global_state_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with seeded_rng(42):
        a = torch.rand(3)
    with seeded_rng(42):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), before)


def test_augmented_batches_do_not_depend_on_the_number_of_workers():
    ds = ShapesDataset(num_images=6, size=(32, 32))
    ds.transforms = build_pipeline([{"name": "random_flip", "p": 0.5},
                                    {"name": "color_jitter", "brightness": 0.5}])
    runs = []
    for workers in (0, 2):
        loader = build_train_loader(ds, batch_size=3, num_workers=workers, seed=7, start=3)
        runs.append([b["image"] for b in itertools.islice(iter(loader), 4)])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    # the augmentation really is random: the same image drawn in two epochs differs
    s = TrainingBatchSampler(6, 6, seed=7)
    e0, e1 = take(s, 2)
    seeds0, seeds1 = dict(e0), dict(e1)
    wrapped = SeededSamples(ds)
    differ = [not torch.equal(wrapped[(i, seeds0[i])]["image"], wrapped[(i, seeds1[i])]["image"])
              for i in range(6)]
    assert any(differ)


def test_eval_shards_cover_every_sample_once():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(7))


def test_dataloader_workers_ignore_ctrl_c_but_not_sigterm():
    import signal

    from segzoo.data import build_dataloader
    from segzoo.data.loader import ignore_interrupt

    ds = ShapesDataset(num_images=2, size=(32, 32))
    assert build_train_loader(ds, batch_size=1).worker_init_fn is ignore_interrupt
    assert build_dataloader(ds, batch_size=1, shuffle=False).worker_init_fn is ignore_interrupt
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ignore_interrupt(0)  # what a worker runs first (also under the spawn start method)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        # SIGTERM is how workers are stopped at exit: ignoring it hangs every error path
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
