"""Classifying new inputs with a checkpoint: the model rebuilt from its run record, inputs read
and preprocessed as in training, results written as CSV."""
