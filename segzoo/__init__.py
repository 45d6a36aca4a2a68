"""segzoo: a modular image-segmentation model zoo.

``import segzoo``; ``segzoo.list_models()``; ``segzoo.build_model("fcn8s", num_classes=11)``
returns a plain ``torch.nn.Module``. See README.md and docs/ (docs/architecture.md: the layers).

Importing the package fills every registry (datasets and transforms, models, backbones, heads and
necks, losses, optimizers and schedules), so that configs can name any of them.
"""

__version__ = "0.1.0"

from segzoo import losses, optim  # noqa: E402,F401  (register losses, optimizers and schedules)
from segzoo.data import list_datasets  # noqa: E402
from segzoo.models import build_backbone, build_model, list_backbones, list_models  # noqa: E402

__all__ = ["build_backbone", "build_model", "list_backbones", "list_datasets", "list_models", "__version__"]
