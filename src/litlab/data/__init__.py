"""Data modules: every dataset becomes uint8 or float tensors plus integer labels.

Each module exposes ``input_shape``, ``num_classes``, ``class_names`` and a ``preprocess``
(normalization and augmentation applied to whole batches) once ``setup()`` has run.
"""
