"""Models: SAEs (ReLU / TopK / JumpReLU), MLP encoders, dictionaries, per-sample coding, SAELens files."""
