"""Registers sslkit's built-in experiment loggers (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_callbacks(register):
    from .csv_logger import CSVLogger
    from .tensorboard_logger import TensorBoardLogger
    from .wandb_logger import WandbLogger

    register("csv", CSVLogger)
    register("tensorboard", TensorBoardLogger)
    register("wandb", WandbLogger)
