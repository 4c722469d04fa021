"""MambaCode: bidirectional SSM code encoders as Hugging Face models.

Importing the package registers `MambaCodeConfig` and the model classes with transformers' Auto* factories.
The sub-packages `mambacode.corpus`, `mambacode.probing`, `mambacode.spectral` and `mambacode.training` are
imported on demand so that `import mambacode` stays light. `pretrained_path(name)` is the folder of a
checkpoint shipped with the package (`available_pretrained()` lists them).
"""

from .modeling import *  # noqa: F401,F403  (registers with Auto*)
from .modeling import __all__ as _modeling_all
from .pretrained import available_pretrained, pretrained_path


__version__ = "0.1.0"
__all__ = list(_modeling_all) + ["pretrained_path", "available_pretrained"]
