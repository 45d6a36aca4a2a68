"""Shape-generic formulations of size-dependent operations, so models export to ONNX with dynamic
height and width (``torch.export`` with symbolic H, W) and give the same PyTorch outputs.

Each function equals the eager operation it replaces for every input size (tests compare them on
odd and even sizes), but computes its size-dependent quantities with tensor operations instead of
Python branches on sizes, which ``torch.export`` would either freeze to the export size or refuse:

- :class:`AdaptiveAvgPool2d` / :func:`adaptive_avg_pool2d`: torch's adaptive average pooling (the
  bins of PSPNet's pyramid pooling) as two averaging matrices built from the input size (ONNX's own
  pooling ops have fixed kernels, so the exported bins would be those of the export size).
- :func:`conv_transpose_to_size`: a transposed convolution whose output is given a target size
  (FCN's skip fusion: ``ConvTranspose2d(output_size=...)``, else a resize), without the
  size-dependent ``output_padding`` attribute ONNX cannot take.
- :func:`pad_to`: zero-pad or crop the bottom/right to a target size (U-Net's upsampled map to an
  odd skip size).
- :func:`mirror_pad`: mirror padding of any width (repeated reflection), as an index gather.
- :func:`valid_unet_tile`: the valid-padding U-Net tile covering a side, in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def _bin_matrix(n, bins: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Membership (bins, n) of the 0/1 adaptive-pooling windows over a side of ``n`` and their
    lengths (bins,), both int64: window i covers [floor(i n / b), ceil((i + 1) n / b))."""
    i = torch.arange(bins, device=device)
    start = torch.div(i * n, bins, rounding_mode="floor")
    end = torch.div((i + 1) * n + (bins - 1), bins, rounding_mode="floor")
    j = torch.arange(n, device=device)
    member = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return member, end - start


def adaptive_avg_pool2d(x: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """``F.adaptive_avg_pool2d`` for any input size, exportable with dynamic H and W.

    (B, C, H, W) -> (B, C, bh, bw): window (i, j) averages rows [floor(i H / bh), ceil((i + 1) H / bh))
    and the columns likewise, as torch does; computed as (0/1 row windows) @ x @ (0/1 column
    windows)^T divided by the window areas (two 2-D matrix products). A 1x1 output is the plain spatial mean. Equal to torch up
    to float rounding (summation order). Floating inputs only.
    """
    bh, bw = _as_pair(output_size)
    if (bh, bw) == (1, 1):
        return x.mean(dim=(-2, -1), keepdim=True)
    mh, nh = _bin_matrix(x.shape[-2], bh, x.device)
    mw, nw = _bin_matrix(x.shape[-1], bw, x.device)
    b, c, h, w = x.shape
    # two plain 2-D products (a batched matmul would branch on sizes being 1 when traced)
    cols = torch.mm(x.flatten(0, 2), mw.to(x.dtype).t()).reshape(b, c, h, bw)
    rows = torch.mm(cols.transpose(-1, -2).flatten(0, 2), mh.to(x.dtype).t()).reshape(b, c, bw, bh)
    area = (nh[:, None] * nw[None, :]).to(x.dtype)
    return rows.transpose(-1, -2) / area


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` computed by :func:`adaptive_avg_pool2d` (exportable with dynamic
    H, W); same arguments, no parameters, same outputs. ``None`` in ``output_size`` is not
    supported (PSPNet's bins are fixed grid sizes)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        size = self.output_size
        if size is None or (not isinstance(size, int) and None in size):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be fixed, got {size}")
        return adaptive_avg_pool2d(x, size)  # type: ignore[arg-type]


def _take(x: Tensor, dim: int, index: Tensor) -> Tensor:
    return torch.index_select(x, dim, index)


def conv_transpose_to_size(up: nn.ConvTranspose2d, x: Tensor, size: Sequence) -> Tensor:
    """``up(x, output_size=size)`` where ``size`` is one it can produce (each side in [L, L + s - 1],
    L = (h - 1) s - 2 p + k being its plain output), else ``resize(up(x), size)`` (bilinear), as
    FCN's skip fusion does (L = 2 h for its 2x bilinear layers); the choice is made per input, as
    data, so one graph holds for every input size.

    Args:
        up: a ``nn.ConvTranspose2d`` with ``dilation`` 1 and ``output_padding`` 0.
        x: (B, C_in, h, w).
        size: target (H', W') (ints or symbolic sizes).

    Returns:
        (B, C_out, H', W'), equal to the eager branches up to float rounding.

    Raises:
        ValueError: ``up`` dilated or with an output_padding of its own.
    """
    if tuple(up.dilation) != (1, 1) or tuple(up.output_padding) != (0, 0):
        raise ValueError("conv_transpose_to_size needs dilation 1 and output_padding 0")
    (s_h, s_w), (p_h, p_w) = up.stride, up.padding
    full = F.conv_transpose2d(x, up.weight, None, up.stride, 0, 0, up.groups, up.dilation)
    # the output_padding rows/columns lie beyond the full output: zero before the bias
    full = F.pad(full, (0, s_w, 0, s_h))
    h, w = x.shape[-2:]
    th, tw = size[0], size[1]
    dev = x.device
    (k_h, k_w) = up.kernel_size
    len_h, len_w = (h - 1) * s_h - 2 * p_h + k_h, (w - 1) * s_w - 2 * p_w + k_w
    # plain output (no output_padding): rows p .. p + L - 1 of the full output
    base = _take(_take(full, -2, torch.arange(len_h, device=dev) + p_h), -1,
                 torch.arange(len_w, device=dev) + p_w)
    # exact output_padding: rows p .. p + H' - 1 (clamped; used only where H' is in range)
    last_h, last_w = full.shape[-2] - 1, full.shape[-1] - 1
    exact = _take(_take(full, -2, (torch.arange(th, device=dev) + p_h).clamp(max=last_h)), -1,
                  (torch.arange(tw, device=dev) + p_w).clamp(max=last_w))
    if up.bias is not None:
        base = base + up.bias[:, None, None]
        exact = exact + up.bias[:, None, None]
    resized = F.interpolate(base, size=(th, tw), mode="bilinear", align_corners=False)
    lo_h = torch.scalar_tensor(len_h, dtype=torch.int64, device=dev)
    lo_w = torch.scalar_tensor(len_w, dtype=torch.int64, device=dev)
    fits = ((lo_h <= th) & (lo_h + s_h > th) & (lo_w <= tw) & (lo_w + s_w > tw))
    return torch.where(fits, exact, resized)


def pad_to(x: Tensor, size: Sequence) -> Tensor:
    """Zero-pad (or crop, where smaller) the bottom and right of (B, C, H, W) to ``size`` (H', W');
    a no-op at equal size. One ``F.pad`` with possibly negative amounts, exportable."""
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def _reflect_index(n, before, after, device: torch.device) -> Tensor:
    """Source index of each position of a side of ``n`` padded by ``before``/``after`` with
    repeated reflection (period 2 (n - 1), no repeated edge); replicated when ``n`` is 1."""
    i = torch.arange(n + before + after, device=device) - before
    period = torch.clamp(torch.tensor(2, device=device) * (n - 1), min=1)
    r = torch.remainder(i, period)
    return torch.where(r >= n, period - r, r)


def mirror_pad(x: Tensor, top, bottom, left, right) -> Tensor:
    """Mirror (``reflect``) padding of (B, C, H, W) by any amounts, repeated where the padding
    exceeds the image, a 1-pixel side replicated: equal to
    :func:`segzoo.models.layers.padding.mirror_pad`, as one index gather per side (exportable with
    symbolic sizes and amounts).

    Returns:
        (B, C, H + top + bottom, W + left + right).
    """
    h, w = x.shape[-2:]
    x = _take(x, -2, _reflect_index(h, top, bottom, x.device))
    return _take(x, -1, _reflect_index(w, left, right, x.device))


def valid_unet_tile(size, depth: int):
    """The valid-padding U-Net tile for an output side of ``size`` pixels, in closed form.

    A valid U-Net of ``depth`` poolings takes tile sides t = 2^d (a + 8) - 4 (a the bottom size,
    with every level of the expansive path positive: o > 0) and returns o = 2^d (a - 4) + 4 pixels, the tile's centre (572 -> 388 for d = 4). Returns
    ``(t, margin)`` for the smallest tile with o >= size, margin = (t - o) / 2 = 6 * 2^d - 4 being
    the context on each side. ``size`` may be symbolic (no branches).
    """
    p = 2**depth
    a_min = (4 * p - 4) // p + 1  # smallest bottom size with o = p (a - 4) + 4 > 0
    a = torch.sym_max(a_min, 4 + (size - 4 + p - 1) // p)
    return p * (a + 8) - 4, 6 * p - 4


__all__ = ["AdaptiveAvgPool2d", "adaptive_avg_pool2d", "conv_transpose_to_size", "mirror_pad",
           "pad_to", "valid_unet_tile"]
