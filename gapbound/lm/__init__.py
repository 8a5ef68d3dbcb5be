"""Language-model activations: text sources, models and sites, harvesting, shard store, training, autointerp.

Modules: :mod:`~gapbound.lm.text` (text sources, contexts), :mod:`~gapbound.lm.corpus`
(offline English text from Python and Debian packages), :mod:`~gapbound.lm.models`
(loading LMs, activation sites and hook names), :mod:`~gapbound.lm.harvest` (the
resumable harvest; CLI ``python -m gapbound.lm.harvest``), :mod:`~gapbound.lm.shards`
(the shard store), :mod:`~gapbound.lm.objectives` (TopK training with AuxK),
:mod:`~gapbound.lm.training` (the experiment runner), :mod:`~gapbound.lm.autointerp`.
"""
