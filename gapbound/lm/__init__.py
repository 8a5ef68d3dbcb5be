"""Language-model activations: harvesting, shard store, training on shards, autointerp."""
