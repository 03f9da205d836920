"""regtune: find the regularization that makes a PyTorch network generalize."""

from .config import RegConfig
from .estimator import RegularizedNetClassifier, RegularizedNetRegressor

__all__ = ["RegConfig", "RegularizedNetClassifier", "RegularizedNetRegressor", "__version__"]
__version__ = "0.1.0"
