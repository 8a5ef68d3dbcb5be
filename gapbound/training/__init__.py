"""Training: one loop for every method, objectives, dead-latent resampling."""
