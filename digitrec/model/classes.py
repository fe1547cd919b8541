"""The class names the shipped models answer with: the ten digits, and Fashion-MNIST's ten garments.

They live with the model rather than with the datasets because a loaded model needs them to name its
answers (when its model.json has no list of its own), while only training needs the dataset files.
"""

from __future__ import annotations

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
