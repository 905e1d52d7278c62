"""``Module`` and the layers: parameters registered by attribute, train/eval, moves between
devices and dtypes, state dicts with strict checking, as in PyTorch."""
import math
from collections import OrderedDict

from .. import ops
from ..autograd.grad_mode import no_grad
from ..creation import empty
from ..devices import Device
from ..ops.linalg import linear
from ..tensor import Tensor
from . import init


class Parameter(Tensor):
    """A tensor that is a module's parameter: a leaf that requires grad (unless told not to),
    registered by assigning it to a module attribute."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        src = data if isinstance(data, Tensor) else Tensor(data.array, data.device)
        super().__init__(src._a, src._dev, None, False)
        if requires_grad:
            self.requires_grad_()

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        out = Parameter(Tensor(self._dev.backend.copy(self._a), self._dev), self._rg)
        return self._copied_into(out, memo)


class Module:
    """Base class of layers and models: subclass it, assign parameters and submodules as
    attributes in ``__init__``, and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"gpuad.nn: call super().__init__() in {type(self).__name__}"
                                 ".__init__ before assigning attributes")
        if name in self._parameters and not isinstance(value, Parameter) and value is not None:
            raise TypeError(f"gpuad.nn: cannot assign a {type(value).__name__} as parameter "
                            f"{name!r} (an ad.nn.Parameter or None is expected)")
        if name in self._buffers and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value  # a buffer stays a buffer when reassigned
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter) or (value is None and name in self._parameters):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(table)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """A tensor that is part of the state (saved, moved) but not a parameter."""
        self._buffers[name] = tensor

    def register_parameter(self, name, param):
        self._parameters[name] = param

    # ---- traversal -------------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for mod_prefix, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    # ---- modes, devices, gradients ------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move (and/or cast floating) parameters and buffers in place; returns ``self``.
        Parameters stay the same objects, so optimizers made before keep working."""
        if device is not None and not isinstance(device, (str, Device)):
            device, dtype = None, device  # m.to(ad.float64)
        with no_grad():
            for t in list(self.parameters()) + [b for _, b in self.named_buffers()]:
                moved = t.detach().to(device=device,
                                      dtype=dtype if t.dtype.kind == "f" else None)
                t._a, t._dev = moved._a, moved._dev
                t._ver[0] += 1
                if t._grad is not None:
                    t._grad = t._grad.to(device=device, dtype=moved.dtype)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:  # zeros (also where it was nan), no graph, not lent
                p._grad = Tensor(p._dev._backend.zeros_like(p._grad._a), p._dev)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"gpuad.nn: {type(self).__name__} must define forward()")

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """``{name: tensor}`` of every parameter and buffer (detached, sharing storage)."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.detach()
        for name, b in self.named_buffers():
            out[name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters and buffers. Everything is checked before anything
        is written: with ``strict``, missing and unexpected keys raise; a wrong shape always
        raises. Returns ``(missing_keys, unexpected_keys)``."""
        own = dict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        values = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            shape = tuple(getattr(v, "shape", ()))
            if shape != t.shape:
                problems.append(f"{k}: the checkpoint has shape {shape}, the model {t.shape}")
                continue
            try:  # converted before anything is written
                values[k] = _converted(v, t)
            except (TypeError, ValueError) as exc:
                problems.append(f"{k}: {exc}")
        if problems:
            raise RuntimeError(f"gpuad: error(s) loading the state dict into "
                               f"{type(self).__name__}: " + "; ".join(problems)
                               + ". Nothing was loaded")
        with no_grad():
            for k, src in values.items():
                t = own[k]
                t._dev._backend.setitem(t._a, Ellipsis, src._a)
                t._ver[0] += 1
        return missing, unexpected

    # ---- printing -------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _converted(value, like):
    """``value`` as a tensor on ``like``'s device and dtype; a kind of value that would lose
    information (complex into real, text) raises."""
    from ..creation import tensor

    v = value if isinstance(value, Tensor) else tensor(value, device=like.device)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"a {v.dtype} value cannot be loaded into a {like.dtype} tensor")
    if v.dtype.kind == "f" and like.dtype.kind in "iub":
        raise TypeError(f"a {v.dtype} value cannot be loaded into a {like.dtype} tensor")
    return v.detach().to(device=like.device, dtype=like.dtype)


# ---- layers -------------------------------------------------------------------------------------

class Linear(Module):
    """y = x W^T + b, W of shape (out_features, in_features), initialized as PyTorch does
    (uniform in +-1/sqrt(in_features))."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty((out_features, in_features), dtype=dtype, device=device))
        self.bias = (Parameter(empty((out_features,), dtype=dtype, device=device)) if bias
                     else None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    """Modules applied in order."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        mods = list(self._modules.values())
        return Sequential(*mods[i]) if isinstance(i, slice) else mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return ops.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return ops.tanh(x)


class GELU(Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return ops.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    """Zeroes each element with probability p in training mode, scaling the others by
    1 / (1 - p); the identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"gpuad.nn.Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        from ..creation import rand

        keep = rand(*x.shape, device=x.device) >= self.p
        return ops.where(keep, x * (1 / (1 - self.p)), 0)

    def extra_repr(self):
        return f"p={self.p}"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) over the last dims, times weight plus bias."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, device=None,
                 dtype=None):
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

    def forward(self, x):
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

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table picked by integer indices."""

    def __init__(self, num_embeddings, embedding_dim, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(empty((num_embeddings, embedding_dim), dtype=dtype,
                                      device=device))
        init.normal_(self.weight)

    def forward(self, indices):
        if not isinstance(indices, Tensor):
            from ..creation import tensor

            indices = tensor(indices, device=self.weight.device)
        n = self.num_embeddings  # (raises at once on the CPU, at the next host read on CUDA)
        indices.device.backend.require_in_range(
            indices.array, 0, n, IndexError, lambda: f"gpuad.nn.Embedding: indices must be in "
            f"[0, {n}), got values outside it (indices of shape {indices.shape}, "
            f"{indices.dtype}, into a table of {n} rows)")
        return self.weight[indices]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


__all__ = ["Parameter", "Module", "Linear", "Sequential", "ReLU", "Sigmoid", "Tanh", "GELU",
           "Dropout", "LayerNorm", "Embedding"]
