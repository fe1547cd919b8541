"""What trains a model: datasets, augmentation, the training loop, validation splits, evaluation, fine-tuning."""
