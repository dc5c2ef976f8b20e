"""Names of the per-epoch metrics every trial reports; defined once, used everywhere."""

EPOCH = "epoch"  # 1-based; ASHA's time attribute
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"  # the default search metric, maximised
EPOCH_SECONDS = "epoch_seconds"
TRAINABLE_PARAMS = "trainable_params"
