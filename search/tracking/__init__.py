"""What streams while trials run: console progress, TensorBoard event files, W&B runs."""
