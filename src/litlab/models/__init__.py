"""Plain ``nn.Module`` nets (no Lightning). Every builder takes ``input_shape`` and ``num_classes``:
``(C, H, W)`` means images, ``(L, F)`` means sequences."""
