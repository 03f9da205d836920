"""skorch's convention for a network's own constructor arguments, ``module__NAME=value``, as
scikit-learn parameters: one mixin the network estimators and the RegTune estimators share."""

from __future__ import annotations

from typing import Any

__all__ = ["PREFIX", "ModuleParams"]

#: What marks an estimator keyword as the module's own constructor argument.
PREFIX = "module__"


class ModuleParams:
    """skorch's convention for a network's own constructor arguments: ``module__NAME=value``.

    They are parameters like the declared ones, so ``get_params``, ``set_params``, ``clone``,
    ``GridSearchCV`` and pickle see them; they are kept in one private dict (scikit-learn's
    checks allow no other public attributes), and read back as ``est.module__NAME``.
    """

    def _keep_module_params(self, kwargs: dict[str, Any]) -> None:
        for key in kwargs:
            if not key.startswith(PREFIX) or key == PREFIX:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {key!r}; "
                                "keywords beyond its parameters are the module's own constructor "
                                "arguments, given as module__NAME=value")
        self._module_kwargs = dict(kwargs)

    def module_params(self) -> dict[str, Any]:
        """The ``module__NAME`` arguments without their prefix: what the module is built with."""
        return {k[len(PREFIX):]: v for k, v in self.__dict__.get("_module_kwargs", {}).items()}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=deep)
        params.update(self.__dict__.get("_module_kwargs", {}))
        return params

    def set_params(self, **params: Any) -> ModuleParams:
        routed = {k: params.pop(k) for k in list(params) if k.startswith(PREFIX)}
        if PREFIX in routed:
            raise ValueError("module__ needs a name: module__NAME=value")
        super().set_params(**params)
        self._module_kwargs = {**self.__dict__.get("_module_kwargs", {}), **routed}
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith(PREFIX):
            kwargs = self.__dict__.get("_module_kwargs", {})
            if name in kwargs:
                return kwargs[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
