"""One rank of a DDP run started by torchrun (tests/cuda/test_cuda_cli.py): NCCL on a GPU, gloo on the
CPU. A segzoo DeepLab v3+ (BatchNorm converted to SyncBatchNorm on CUDA) is wrapped in
DistributedDataParallel and trained 3 steps next to an unwrapped copy; writes JSON to argv[1]:
backend, world size, device, the largest weight difference between the two, and the results of
segzoo's collective helpers (all-reduce, all-gather)."""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import segzoo
from segzoo import distributed


def main(out_path: str) -> None:
    cuda = torch.cuda.is_available()
    rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        torch.manual_seed(0)
        model = segzoo.build_model("deeplabv3plus", num_classes=4, backbone="resnet18").to(device)
        for m in model.modules():  # the two models would draw different dropout masks
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.p = 0.0
        ref = copy.deepcopy(model)
        if cuda:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = DistributedDataParallel(model, device_ids=[rank] if cuda else None)
        g = torch.Generator().manual_seed(1)
        images = torch.rand(2, 3, 64, 64, generator=g).to(device)
        labels = torch.randint(0, 4, (2, 64, 64), generator=g).to(device)
        dtype = torch.bfloat16 if cuda else None
        for m in (ddp, ref):
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
            for _ in range(3):
                opt.zero_grad()
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    out = m(images)
                loss = sum(w * F.cross_entropy(out[k].float(), labels) for k, w in ref.loss_weights.items())
                loss.backward()
                opt.step()
        diff = max((p.detach() - q.detach()).abs().max().item()
                   for p, q in zip(ddp.module.parameters(), ref.parameters()))
        t = torch.full((1,), float(rank + 1), device=device)
        distributed.all_reduce_sum(t)
        result = {"backend": dist.get_backend(), "world_size": dist.get_world_size(),
                  "device": str(device), "weight_diff": diff, "all_reduce": t.item(),
                  "gathered": distributed.all_gather_object({"rank": rank}),
                  "sync_bn": sum(isinstance(m, torch.nn.SyncBatchNorm) for m in ddp.modules()),
                  "loss": loss.item()}
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
