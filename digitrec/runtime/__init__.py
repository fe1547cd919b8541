"""Process plumbing: importing TensorFlow quietly, log verbosity, and a quick exit once TensorFlow is loaded."""
