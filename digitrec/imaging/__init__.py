"""Images before the model: decoding, ink maps, and turning a mark into the network's 28x28 input."""
