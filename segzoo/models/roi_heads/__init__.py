"""RoI heads of Mask R-CNN: torchvision's RoIHeads with the paper's ablation options, RoI poolers,
box and mask heads."""

from segzoo.models.roi_heads.heads import MLPMaskHead, MLPMaskPredictor, Res5BoxHead
from segzoo.models.roi_heads.mask_roi_heads import MaskRCNNRoIHeads, mask_loss, project_masks
from segzoo.models.roi_heads.poolers import MultiScaleRoIPool

__all__ = ["MLPMaskHead", "MLPMaskPredictor", "MaskRCNNRoIHeads", "MultiScaleRoIPool", "Res5BoxHead",
           "mask_loss", "project_masks"]
