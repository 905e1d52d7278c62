"""The layers, as ``torch.nn`` spells them: Linear, Sequential, the activations, Dropout,
LayerNorm and Embedding, each initialized as PyTorch does."""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

from .. import ops
from ..backends import tracing
from ..creation import empty
from ..ops.linalg import linear
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    from .._typing import DeviceLike, DTypeLike, ShapeLike, TensorLike


class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features), initialized as PyTorch does
    (uniform in +-1/sqrt(in_features)).

    >>> lin = ad.nn.Linear(3, 2)
    >>> lin.weight.shape, lin.bias.shape
    ((2, 3), (2,))
    >>> with ad.no_grad():
    ...     _ = lin.weight.copy_(ad.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]))
    ...     _ = lin.bias.fill_(0.5)
    >>> lin(ad.tensor([[1.0, 1.0, 1.0]]))
    tensor([[6.5000, 1.5000]], grad_fn=<LinearBackward>)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: DeviceLike | None = None, dtype: DTypeLike = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty((out_features, in_features), dtype=dtype, device=device))
        self.bias = (Parameter(empty((out_features,), dtype=dtype, device=device)) if bias
                     else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw W and b again as at construction: W Kaiming-uniform with a = sqrt(5), b
        uniform in +-1/sqrt(in_features) (zero bound when in_features is 0)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x W^T + b over the last axis of x (shape (..., in_features) to
        (..., out_features))."""
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """The sizes and whether there is a bias."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    """Modules applied in order.

    >>> model = ad.nn.Sequential(ad.nn.Linear(3, 4), ad.nn.ReLU(), ad.nn.Linear(4, 1))
    >>> model
    Sequential(
      (0): Linear(in_features=3, out_features=4, bias=True)
      (1): ReLU()
      (2): Linear(in_features=4, out_features=1, bias=True)
    )
    >>> model(ad.ones(2, 3)).shape
    (2, 1)
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def forward(self, x: Any) -> Any:
        """x through each module in turn, each taking the previous one's output."""
        for m in self._modules.values():
            x = m(x)
        return x

    @overload
    def __getitem__(self, i: int) -> Module: ...
    @overload
    def __getitem__(self, i: slice) -> Sequential: ...
    def __getitem__(self, i: int | slice) -> Module | Sequential:
        mods = list(self._modules.values())
        return Sequential(*mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by its position); returns ``self``."""
        setattr(self, str(len(self._modules)), module)
        return self


class ReLU(Module):
    """max(x, 0), elementwise (:func:`gpuad.relu`); the derivative at 0 is 0, as PyTorch's.

    >>> ad.nn.ReLU()(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([0., 0., 2.])
    """

    def forward(self, x: TensorLike) -> Tensor:
        """relu(x), of x's shape, dtype and device."""
        return ops.relu(x)


class Sigmoid(Module):
    """1 / (1 + e^-x), elementwise (:func:`gpuad.sigmoid`); derivative y (1 - y).

    >>> ad.nn.Sigmoid()(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([0.2689, 0.5000, 0.8808])
    """

    def forward(self, x: TensorLike) -> Tensor:
        """sigmoid(x), of x's shape, dtype and device."""
        return ops.sigmoid(x)


class Tanh(Module):
    """The hyperbolic tangent, elementwise (:func:`gpuad.tanh`); derivative 1 - y^2.

    >>> ad.nn.Tanh()(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([-0.7616,  0.0000,  0.9640])
    """

    def forward(self, x: TensorLike) -> Tensor:
        """tanh(x), of x's shape, dtype and device."""
        return ops.tanh(x)


class GELU(Module):
    """x Phi(x), Phi the standard normal CDF, elementwise (:func:`gpuad.gelu`);
    ``approximate="tanh"`` takes PyTorch's tanh form instead.

    >>> ad.nn.GELU()(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([-0.1587,  0.0000,  1.9545])
    >>> ad.nn.GELU(approximate="tanh")(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([-0.1588,  0.0000,  1.9546])
    """

    def __init__(self, approximate: Literal["none", "tanh"] = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: TensorLike) -> Tensor:
        """gelu(x) in the chosen form, of x's shape, dtype and device."""
        return ops.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        """The form, ``approximate``."""
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    """Zeroes each element with probability p in training mode, scaling the others by
    1 / (1 - p); the identity in eval mode.

    >>> drop = ad.nn.Dropout(0.5)
    >>> sorted(set(drop(ad.ones(100)).tolist()))  # dropped, or kept and doubled
    [0.0, 2.0]
    >>> drop.eval()(ad.ones(3))
    tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"gpuad.nn.Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """x with each element kept with probability 1 - p (drawn from the generator that
        ``ad.manual_seed`` seeds) and scaled by 1 / (1 - p), the others 0; x itself in eval
        mode or with p = 0."""
        if not tracing.state(self, "training") or self.p == 0:  # (compiled steps check it)
            return x
        if self.p == 1:
            return x * 0
        from ..creation import rand

        keep = rand(*x.shape, device=x.device) >= self.p
        return ops.where(keep, x * (1 / (1 - self.p)), 0)

    def extra_repr(self) -> str:
        """The drop probability, ``p``."""
        return f"p={self.p}"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) over the last dims, times weight plus bias (the variance
    is the biased one, divided by n).

    >>> ln = ad.nn.LayerNorm(3)  # weight 1, bias 0 to start
    >>> ln(ad.tensor([[1.0, 2.0, 3.0]]))  # mean 2, var 2/3
    tensor([[-1.2247,  0.0000,  1.2247]], grad_fn=<AddBackward>)
    """

    weight: Parameter | None
    bias: Parameter | None

    def __init__(self, normalized_shape: ShapeLike, eps: float = 1e-5,
                 elementwise_affine: bool = True, device: DeviceLike | None = None,
                 dtype: DTypeLike = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
            normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        if elementwise_affine:
            self.weight = Parameter(empty(shape, dtype=dtype, device=device))
            self.bias = Parameter(empty(shape, dtype=dtype, device=device))
            init.ones_(self.weight)
            init.zeros_(self.bias)
        else:
            self.weight = self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        """(x - mean) / sqrt(var + eps) over the last ``len(normalized_shape)`` axes (which
        must equal ``normalized_shape``; var is the biased variance), times weight plus bias;
        float16 input is normalized in float32 and cast back."""
        n = len(self.normalized_shape)
        if x.shape[x.ndim - n:] != self.normalized_shape or x.ndim < n:
            raise ValueError(f"gpuad.nn.LayerNorm: the input's last dimensions {x.shape} do "
                             f"not match normalized_shape {self.normalized_shape}")
        half = x.dtype == "float16"  # statistics in float32, as PyTorch
        xw = x.astype("float32") if half else x
        axes = tuple(range(x.ndim - n, x.ndim))
        mean = xw.mean(axis=axes, keepdims=True)
        var = ops.var(xw, axis=axes, keepdims=True)
        y = (xw - mean) * ops.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y.astype("float16") if half else y

    def extra_repr(self) -> str:
        """The normalized shape and ``eps``."""
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table picked by integer indices.

    >>> emb = ad.nn.Embedding(10, 4)
    >>> emb(ad.tensor([[1, 2], [3, 1]])).shape
    (2, 2, 4)
    >>> bool((emb(ad.tensor([3]))[0] == emb.weight[3]).all())
    True
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 device: DeviceLike | None = None, dtype: DTypeLike = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(empty((num_embeddings, embedding_dim), dtype=dtype,
                                      device=device))
        init.normal_(self.weight)

    def forward(self, indices: TensorLike) -> Tensor:
        """``weight[indices]``: shape ``indices.shape + (embedding_dim,)``; an index outside
        [0, num_embeddings) raises IndexError (on CUDA, at the next read back to the host).
        The gradient of a row picked several times is summed."""
        if not isinstance(indices, Tensor):
            from ..creation import tensor

            indices = tensor(indices, device=self.weight.device)
        n = self.num_embeddings  # (raises at once on the CPU, at the next host read on CUDA)
        indices.device.backend.require_in_range(
            indices.array, 0, n, IndexError, lambda: f"gpuad.nn.Embedding: indices must be in "
            f"[0, {n}), got values outside it (indices of shape {indices.shape}, "
            f"{indices.dtype}, into a table of {n} rows)")
        return self.weight[indices]

    def extra_repr(self) -> str:
        """The table's two sizes."""
        return f"{self.num_embeddings}, {self.embedding_dim}"
