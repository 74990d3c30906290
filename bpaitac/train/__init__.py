"""Training: the fit loop, checkpoints and resumption, early stopping, callbacks, training runs."""
