"""The paper's synthetic setting: generative model, metrics, methods x settings."""
