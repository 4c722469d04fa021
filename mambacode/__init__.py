"""MambaCode: bidirectional SSM code encoders as Hugging Face models.

Importing the package registers `MambaCodeConfig` and the model classes with transformers' Auto* factories.
The sub-packages `mambacode.corpus`, `mambacode.probing`, `mambacode.spectral` and `mambacode.training` are
imported on demand so that `import mambacode` stays light.
"""

from .modeling import *  # noqa: F401,F403  (registers with Auto*)
from .modeling import __all__ as _modeling_all

__version__ = "0.1.0"
__all__ = list(_modeling_all)
