"""Reference constants shared by data, models, metrics and config (one definition each)."""

# ImageNet per-channel mean and std of RGB images in [0, 1] (torchvision's, used to normalise the
# input of every ImageNet-pretrained encoder; detection models apply them inside the model)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# COCO person keypoint OKS sigmas, in the order of the 17 COCO person keypoints (nose, eyes, ears,
# shoulders, elbows, wrists, hips, knees, ankles); Ronchi & Perona / cocodataset.org keypoint eval
COCO_PERSON_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                      0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
