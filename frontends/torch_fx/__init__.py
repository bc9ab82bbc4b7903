"""torch.fx frontend: converter tables keyed by module class, function and tensor method."""

from asgnas_ir.frontends.torch_fx.driver import lower_torch_fx

__all__ = ["lower_torch_fx"]
