"""mambacode.modeling: config, sequence mixers and PreTrainedModel classes."""

__all__: list = []
