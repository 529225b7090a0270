"""Model zoo: the four seed architectures and feredge's own edge model, registered by name."""

from feredge.models._registry import InputSpec, create_model, list_models, model_info, register_model

__all__ = ["InputSpec", "create_model", "list_models", "model_info", "register_model"]
