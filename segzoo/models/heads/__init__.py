"""Decode and auxiliary heads, registered in :data:`segzoo.registry.HEADS`."""

from segzoo.models.heads.fcn_skip import FCNSkipHead, vgg_classifier_to_fc

__all__ = ["FCNSkipHead", "vgg_classifier_to_fc"]
