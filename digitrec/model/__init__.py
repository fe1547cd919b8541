"""What loads and runs a model: the network, its checkpoints and versions, calibration, ``DigitRecognizer``."""
