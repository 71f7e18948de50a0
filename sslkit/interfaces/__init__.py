"""Every extension interface of sslkit, one module each.

- :class:`PretextTask` (:mod:`.task`): a self-supervised task: its batch transform, head and loss,
  with what the engine tells it (:class:`RunInfo`, :class:`StepInfo`) and what its loss may
  return (:class:`Loss`); the views it may ask for (:class:`View`, :mod:`.views`);
- :class:`Backbone` and :class:`Stage` (:mod:`.backbone`): an image encoder with named stages;
- :class:`Probe` and :class:`ProbeConfig` (:mod:`.probe`): a classifier on a frozen stage;
- :class:`Callback` (:mod:`.callback`): an observer of the training loop (progress, loggers);
- :class:`Exporter` (:mod:`.exporter`): a file format for a trained encoder;
- :class:`Recipe` and :class:`ProbeJob` (:mod:`.recipe`): a paper reproduction's protocol.

Each configurable one carries a nested pydantic ``Config`` (a :class:`Config`, ``extra="forbid"``)
whose fields are the options a user can set (``--set backbone.width=0.5``); the class is built
from a validated instance of it. Plugins register implementations through the hooks in
:mod:`sslkit.hookspecs`.
"""

from .backbone import Backbone, Stage
from .base import Config
from .callback import Callback
from .exporter import Exporter, ExportReport
from .probe import Probe, ProbeConfig
from .recipe import Arm, ProbeJob, Recipe
from .task import Loss, PretextTask, RunInfo, StepInfo, as_loss, copy_generator
from .views import View

__all__ = [
    "Arm",
    "Backbone",
    "Callback",
    "Config",
    "ExportReport",
    "Exporter",
    "Loss",
    "PretextTask",
    "Probe",
    "ProbeConfig",
    "ProbeJob",
    "Recipe",
    "RunInfo",
    "Stage",
    "StepInfo",
    "View",
    "as_loss",
    "copy_generator",
]
