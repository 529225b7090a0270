"""Model zoo: the four seed architectures and feredge's own edge models, registered by name.

Importing the package imports every architecture (needs torch), which registers it.
"""

from feredge.models import edge, mmnet, multitask_cnn, nano, resmasking, vgg  # noqa: F401  (they register)
from feredge.models._registry import InputSpec, create_model, list_models, model_info, register_model

__all__ = ["InputSpec", "create_model", "list_models", "model_info", "register_model"]
