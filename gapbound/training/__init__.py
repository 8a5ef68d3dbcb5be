"""Training: one loop for every method, its objectives, dead-latent resampling, minibatches.

- :func:`train`, :class:`TrainConfig`, :class:`TrainResult` (:mod:`.loop`): Adam, curves, checkpoint/resume;
- :class:`Supervised`, :class:`Autoencoder`, :func:`l1_to_lam` (:mod:`.objectives`): losses and their conventions;
- :func:`resample_dead`, :func:`high_loss_inputs` (:mod:`.resample`): the one dead-latent resampling;
- :func:`tensor_batches`, :func:`stream_batches` (:mod:`.batches`): step-indexed minibatches.
"""

from .batches import Batch, BatchFn, stream_batches, tensor_batches
from .loop import TrainConfig, TrainResult, train
from .objectives import Autoencoder, Supervised, Trainable, l1_penalty, l1_to_lam, lam_to_l1
from .resample import Touched, high_loss_inputs, reset_adam_rows, resample_dead

__all__ = [
    "train", "TrainConfig", "TrainResult", "Supervised", "Autoencoder", "Trainable", "l1_to_lam", "lam_to_l1",
    "l1_penalty", "resample_dead", "high_loss_inputs", "reset_adam_rows", "Touched", "Batch", "BatchFn",
    "tensor_batches", "stream_batches",
]
