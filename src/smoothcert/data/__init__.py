"""Datasets in [0, 1] pixel space: classification (digits, MNIST, CIFAR-10, ImageNet), segmentation
(Cityscapes, shapes), boxes, and the bundled synthetic shapes."""
