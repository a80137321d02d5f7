"""The jobs that own a run folder: train, distill, fine-tune, merge, export, train a vocoder. Each job checks
everything it was given, then writes; the trainers below it only train."""

from .setup import Session
from .share import export, merge
from .train import train
from .tune import distill, finetune
from .vocoder import train_vocoder

__all__ = ["Session", "distill", "export", "finetune", "merge", "train", "train_vocoder"]
