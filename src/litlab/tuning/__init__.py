"""Tuning before a long run: the learning-rate range test of ``python -m litlab.lr_find``.

``lr_settings`` checks the ``lr_find`` node without torch (the command line runs it first);
``lr_curve`` holds the sweep's rates, the smoothing and the suggestion as plain arithmetic;
``lr_range`` runs the steps on the task as training builds it; ``lr_files`` writes the results.
"""
