"""``model.net`` is a builder that litlab finishes with the data's shape: it needs ``_partial_: true``.

litlab's task builds its net as ``net(input_shape=..., num_classes=...)`` once the data is known
(``build.build_model``). A net of the user's own written as a plain constructor call
(``net: {_target_: my_nets.Tiny, width: 32}``, as lightning-hydra-template's nets are) was built by
Hydra without those two arguments, and failed with Python's "missing 2 required positional
arguments" after the run's folder was made and the data prepared. A class or function named through
``hydra.utils.get_class``/``get_method`` (``net: {_target_: hydra.utils.get_class, path: my_nets.Tiny}``)
is what litlab then calls with those two arguments: that one needs no ``_partial_``.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from litlab.errors import LitlabError

# litlab's task, which builds model.net itself; a task of the user's own may take a built net
CLASSIFIER = "litlab.tasks.classification.Classifier"
# targets that return the class or function named by ``path``, which litlab calls with the data's shape
REFERENCES = ("hydra.utils.get_class", "hydra.utils.get_method")


def check_net_partial(cfg: DictConfig) -> None:
    """Refuses a ``model.net`` with a ``_target_`` but without ``_partial_: true`` under litlab's task."""
    try:
        model = OmegaConf.select(cfg, "model")
        if not isinstance(model, DictConfig) or model.get("_target_") != CLASSIFIER:
            return
        net = model.get("net")
        if not isinstance(net, DictConfig) or "_target_" not in net or net.get("_partial_") is True:
            return
        target, partial = net.get("_target_"), net.get("_partial_")
        if target in REFERENCES:
            return
    except OmegaConfBaseException:  # an interpolation that resolves only in the run: built, and checked, there
        return
    given = f"_partial_: {partial}" if "_partial_" in net else "no _partial_"
    raise LitlabError(f"model.net needs _partial_: true: litlab builds the net, passing input_shape and "
                      f"num_classes; model.net ({target}) has {given}, so it would be built without them. Add "
                      f"_partial_: true under net: in the model's file, or give ++model.net._partial_=true.")
