"""Classifier architectures chosen by input shape."""

from __future__ import annotations

from torch import nn


def mnist_challenge_cnn(in_channels: int, num_classes: int) -> nn.Sequential:
    """The MNIST-challenge CNN (Madry et al.): conv 32, conv 64, FC 1024, for 28x28 inputs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, num_classes),
    )


def small_digits_cnn(in_channels: int, num_classes: int) -> nn.Sequential:
    """The MNIST-challenge CNN scaled to 8x8 inputs: conv 16, conv 32, FC 128."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes),
    )


def vgg_small(in_channels: int, num_classes: int) -> nn.Sequential:
    """A VGG-style network for 32x32 colour images: 2x32, 2x64, 2x128 convolutions, FC 256."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in (32, 64, 128):
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)


def generic_cnn(in_channels: int, num_classes: int) -> nn.Sequential:
    """Fallback for other shapes: two convolutions and global average pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
    )


def classifier_for_shape(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    channels, height, width = input_shape
    if (height, width) == (28, 28):
        return mnist_challenge_cnn(channels, num_classes)
    if (height, width) == (8, 8):
        return small_digits_cnn(channels, num_classes)
    if (height, width) == (32, 32):
        return vgg_small(channels, num_classes)
    return generic_cnn(channels, num_classes)
