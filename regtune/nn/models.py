"""The networks: an MLP for tables and a small CNN for images, built from a RegConfig."""

from __future__ import annotations

from torch import Tensor, nn

from regtune.config import RegConfig
from regtune.exceptions import RegConfigError
from regtune.nn.regularizers import Regularizer, layer_block, make_dropout

__all__ = ["CNN", "MLP", "build_model", "build_network"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "selu": nn.SELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _dense_blocks(n_in: int, config: RegConfig) -> tuple[list[nn.Module], int]:
    modules: list[nn.Module] = []
    for width in config.hidden_layer_sizes:
        modules += layer_block(
            nn.Linear(n_in, width),
            _ACTIVATIONS[config.activation](),
            norm=nn.BatchNorm1d(width),
            batch_norm=config.batch_norm,
            dropout=make_dropout(config.dropout, config.dropout_variant),
        )
        n_in = width
    return modules, n_in


class MLP(nn.Module):
    """Fully connected blocks ``Linear -> [BN] -> act -> [BN] -> [dropout]`` and a linear head."""

    def __init__(self, n_features: int, n_outputs: int, config: RegConfig) -> None:
        super().__init__()
        blocks, width = _dense_blocks(n_features, config)
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)
        _init_weights(self, config.activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class CNN(nn.Module):
    """3x3 conv blocks with 2x2 pooling over flattened images, then the MLP's dense blocks.

    Takes ``(batch, C*H*W)`` so it shares the tabular data path; dropout acts on the dense part.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int, config: RegConfig) -> None:
        super().__init__()
        c, h, w = image_shape
        convs: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
        for channels in config.conv_channels:
            convs += layer_block(
                nn.Conv2d(c, channels, 3, padding=1),
                _ACTIVATIONS[config.activation](),
                norm=nn.BatchNorm2d(channels),
                batch_norm=config.batch_norm,
                dropout=None,
            )
            if min(h, w) >= 4:
                convs.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = channels
        convs.append(nn.Flatten())
        self.features = nn.Sequential(*convs)
        blocks, width = _dense_blocks(c * h * w, config)
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, n_outputs)
        _init_weights(self, config.activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.features(x)))


def build_model(
    config: RegConfig,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """The network a configuration describes; ``architecture="cnn"`` needs ``image_shape``."""
    if config.architecture == "cnn":
        if image_shape is None:
            raise RegConfigError("architecture='cnn' needs image_shape, e.g. (1, 8, 8) for digits")
        c, h, w = image_shape
        if c * h * w != n_features:
            raise RegConfigError(f"image_shape={tuple(image_shape)} holds {c * h * w} values but X has {n_features} features")
        return CNN(tuple(image_shape), n_outputs, config)
    return MLP(n_features, n_outputs, config)


def build_network(
    config: RegConfig,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None,
    regularizers: list[Regularizer],
) -> nn.Module:
    """The model with every regularizer's build-time hook applied (e.g. spectral norm)."""
    model = build_model(config, n_features, n_outputs, image_shape)
    for reg in regularizers:
        model = reg.build(model)
    return model


def _init_weights(model: nn.Module, activation: str) -> None:
    # SELU's self-normalization needs LeCun-normal weights; torch's default suits the others.
    if activation != "selu":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            nn.init.zeros_(m.bias)
