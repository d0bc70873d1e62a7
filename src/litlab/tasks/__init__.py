"""LightningModules: one per task, each wrapping any plain ``nn.Module`` net."""
