"""``ad.optim``: optimizers and learning-rate schedules, as ``torch.optim`` spells them."""
from . import lr_scheduler
from .optimizers import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
