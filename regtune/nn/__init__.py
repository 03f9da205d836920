"""Networks and the one training loop: built-in models, the trainer, callbacks and the regularizer hooks."""
