"""What a run leaves behind for people: metrics.json, the printed summary, TensorBoard hparams."""
