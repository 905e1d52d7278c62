"""The TensorFlow seed articles' examples (seeds/000, 002, 003), in gpuad spelling, with their
values and gradients."""
import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    """These examples print and compare CPU tensors (the default
    device is cuda:0 where a GPU is usable)."""

F32 = np.float32


# ---- seeds/000: GradientTape basics and the shopping bill -----------------------------------

def test_square_of_a_variable_constant_and_watched_constant(device):
    x = ad.Variable(5.0, device=device)
    with ad.GradientTape() as tape:
        result = ad.square(x)
    g = tape.gradient(result, x)
    assert g.item() == 10.0 and g.dtype == ad.float32 and g.shape == ()

    x = ad.constant(5.0, device=device)
    with ad.GradientTape() as tape:
        result = ad.square(x)
    assert tape.gradient(result, x) is None

    with ad.GradientTape() as tape:
        tape.watch(x)
        result = ad.square(x)
    assert tape.gradient(result, x).item() == 10.0


def _bill(device):
    return [ad.Variable(v, device=device) for v in (100.0, 2.0, 150.0, 3.0, 1.1)]


def _expected_bill():
    apple, apple_num, orange, orange_num, tax = map(F32, (100.0, 2.0, 150.0, 3.0, 1.1))
    payment = tax * (apple * apple_num + orange * orange_num)
    grads = [tax * apple_num, tax * apple, tax * orange_num, tax * orange,
             apple * apple_num + orange * orange_num]
    return payment, grads


def calc_payment(apple, apple_num, orange, orange_num, tax):
    """The article's @tf.function forward function (gpuad needs no decorator)."""
    return tax * (apple * apple_num + orange * orange_num)


@pytest.mark.parametrize("form", ["step by step", "one expression", "function"])
def test_shopping_bill(device, form):
    apple, apple_num, orange, orange_num, tax = variables = _bill(device)
    with ad.GradientTape() as tape:
        if form == "step by step":
            apple_val = apple * apple_num
            orange_val = orange * orange_num
            sum_val = apple_val + orange_val
            payment = tax * sum_val
        elif form == "one expression":
            payment = tax * (apple * apple_num + orange * orange_num)
        else:
            payment = calc_payment(*variables)
    expected_payment, expected_grads = _expected_bill()
    assert payment.item() == expected_payment == 715.0
    grads = tape.gradient(payment, variables)
    assert isinstance(grads, list) and len(grads) == 5
    got = [g.numpy() for g in grads]
    assert [g.dtype for g in got] == [np.float32] * 5
    np.testing.assert_array_equal(got, expected_grads)  # 2.2, 110, 3.3000002, 165, 650
    assert_close(got, [2.2, 110.0, 3.3, 165.0, 650.0], rtol=1e-6, device=device)
    assert got[2] == F32(3.3000002)


# ---- seeds/002: GradientTape notes --------------------------------------------------------

def test_first_and_second_derivative_of_x_squared(device):
    x = ad.constant(8.0, device=device)
    with ad.GradientTape() as t:
        t.watch(x)
        y = x * x
    assert t.gradient(y, x).item() == 16.0

    x = ad.constant(3.0, device=device)
    with ad.GradientTape() as t:
        t.watch(x)
        with ad.GradientTape() as tt:
            tt.watch(x)
            y = x * x
        dy_dx = tt.gradient(y, x)
    dy2_dx2 = t.gradient(dy_dx, x)
    assert dy_dx.item() == 6.0 and dy2_dx2.item() == 2.0


def test_identity_gradient_is_one(device):
    x = ad.constant(8.0, device=device)
    with ad.GradientTape() as t:
        t.watch(x)
        y = x
    assert t.gradient(y, x).item() == 1.0


def test_control_flow(device):
    def f(x, y):
        output = 1.0
        for i in range(y):
            if i > 1 and i < 5:
                output = ad.multiply(output, x)
        return output

    def grad(x, y):
        with ad.GradientTape() as t:
            t.watch(x)
            out = f(x, y)
        return t.gradient(out, x)

    x = ad.tensor(2.0, device=device)  # tf.convert_to_tensor
    assert grad(x, 6).numpy() == 12.0


def test_reduce_sum_and_multiply(device):
    x = ad.ones((2, 2), device=device)
    with ad.GradientTape() as t:
        t.watch(x)
        y = ad.reduce_sum(x)
        z = ad.multiply(y, y)
    assert y.item() == 4.0 and z.item() == 16.0
    np.testing.assert_array_equal(t.gradient(z, x).numpy(), [[8.0, 8.0], [8.0, 8.0]])


def test_while_loop_prints_and_returns(capsys):
    i = ad.constant(0)
    c = lambda i: ad.less(i, 10)  # noqa: E731

    def b(i):
        print(i)
        return (ad.add(i, 1),)

    r = ad.while_loop(c, b, [i])
    assert capsys.readouterr().out.split("\n")[:10] == [f"tensor({k})" for k in range(10)]
    assert isinstance(r, tuple) and len(r) == 1 and r[0].item() == 10


def test_gather_nd_examples(device):
    x = ad.constant([0.1, 0.1, 1.5, 4.5, 3.6, 1.2], device=device)
    y = ad.constant([3.1, 2.3, 1.4, 2.3, 4.4, 3.1], device=device)
    unique_indices = ad.constant([0, 1, 2, 3, 4, 5], device=device)
    x = ad.gather_nd(x, unique_indices[:, None])
    y = ad.gather_nd(y, unique_indices[:, None])
    out = ad.multiply(x, y)
    assert out.shape == (6,) and out.dtype == ad.float32
    assert_close(out.numpy(), [0.31, 0.23, 2.1, 10.349999, 15.84, 3.72],
                 rtol=1e-6, device=device)
    two_d = ad.gather_nd([[1, 2, 3], [4, 5, 6]], [[1, 1], [1, 2]])
    assert two_d.shape == (2,) and two_d.numpy().tolist() == [5, 6]


def test_cond(device):
    x = ad.constant(2, device=device)
    y = ad.constant(5, device=device)

    def f1():
        return ad.multiply(x, 17)

    def f2():
        return ad.add(y, 23)

    r = ad.cond(ad.less(x, y), f1, f2)
    assert r.item() == 34


@pytest.mark.parametrize("kind", ["constant", "variable"])
def test_mini_func_constant_and_variable(device, kind):
    def mini_func(x):  # the article's @tf.function
        return x * x

    if kind == "constant":
        x = ad.constant(5.0, device=device)
        with ad.GradientTape() as t:
            t.watch(x)
            result = mini_func(x)
    else:
        x = ad.Variable(5.0, device=device)
        with ad.GradientTape() as t:
            result = mini_func(x)
    assert t.gradient(result, x).item() == 10.0


def test_clip_zeros_ones_fill_cast_numpy(device):
    t = ad.constant([[-10.0, -1.0, 0.0], [0.0, 2.0, 10.0]], device=device)
    t2 = ad.clip_by_value(t, clip_value_min=-1, clip_value_max=1)
    np.testing.assert_array_equal(t2.numpy(), np.array([[-1, -1, 0], [0, 1, 1]], np.float32))
    assert t2.numpy().dtype == np.float32
    z = ad.zeros([2, 3], device=device)
    assert z.shape == (2, 3) and z.dtype == ad.float32 and not z.numpy().any()
    o = ad.ones((2, 3), device=device)
    assert o.shape == (2, 3) and (o.numpy() == 1).all()
    f = ad.fill([2, 3], 9, device=device)
    assert f.numpy().tolist() == [[9, 9, 9], [9, 9, 9]] and f.dtype.kind == "i"
    labels = ad.constant([0, 3, 1], device=device)
    cast = ad.cast(labels, ad.float32)
    assert cast.dtype == ad.float32 and cast.numpy().tolist() == [0.0, 3.0, 1.0]
    arr = labels.numpy()
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0, 3, 1]


# ---- seeds/003: autodiff for deep learning -------------------------------------------------

def test_custom_layer_with_sin_activation(device):
    ad.manual_seed(0)
    kernel = ad.Variable(ad.randn(3, 2, device=device), name="kernel")

    def layer(inputs):
        return ad.sin(ad.matmul(inputs, kernel))

    inputs = ad.constant([[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0], [-1.0, -5.0, 2.0]], device=device)
    with ad.GradientTape() as tape:
        output = layer(inputs)
        loss = ad.reduce_sum(output ** 2)
    (gradient,) = tape.gradient(loss, [kernel])
    x, w = inputs.numpy().astype(np.float64), kernel.numpy().astype(np.float64)
    z = x @ w
    assert_close(loss.item(), (np.sin(z) ** 2).sum(), rtol=1e-5, device=device)
    assert_close(gradient.numpy(), x.T @ (2 * np.sin(z) * np.cos(z)),
                 rtol=1e-4, atol=1e-5, device=device)


def test_custom_layer_gradients_with_respect_to_inputs_and_weights(device):
    ad.manual_seed(1)
    x = ad.constant([[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0], [-1.0, -5.0, 2.0]],
                    dtype=ad.float64, device=device)
    w = ad.Variable(ad.rand(3, 2, dtype=ad.float64, device=device) * 2 - 1)
    with ad.GradientTape() as tape:
        tape.watch(x)
        loss = ad.reduce_sum(ad.sin(x @ w) ** 2)
    dx, dw = tape.gradient(loss, [x, w])
    z = x.numpy() @ w.numpy()
    dz = 2 * np.sin(z) * np.cos(z)
    assert_close(dx.numpy(), dz @ w.numpy().T, rtol=1e-12, device=device)
    assert_close(dw.numpy(), x.numpy().T @ dz, rtol=1e-12, device=device)


def test_inv_exp_nan_and_custom_gradient(device):
    inp = ad.Variable(100.0, device=device)

    def function_using_autodiff(x):
        return 1.0 / ad.exp(x)

    with ad.GradientTape() as tape:
        output = function_using_autodiff(inp)
    gradient = tape.gradient(output, inp)
    assert output.numpy() == 0.0 and np.isnan(gradient.numpy())

    @ad.custom_gradient
    def function_using_customdiff(x):
        e = ad.exp(x)

        def grad(upstream):
            return upstream * -ad.exp(-x)

        return 1.0 / e, grad

    with ad.GradientTape() as tape:
        output = function_using_customdiff(inp)
    gradient = tape.gradient(output, inp).numpy()
    assert output.numpy() == 0.0 and not np.isnan(gradient)
    if device == "cpu":  # a GPU may flush this float32 subnormal to zero
        assert gradient == -np.exp(F32(-100.0)) != 0


def test_sigmoid_value_and_derivative_at_2(device):
    x = ad.Variable(2.0, dtype=ad.float64, device=device)
    with ad.GradientTape() as tape:
        y = 1.0 / (1.0 + ad.exp(-x))
    assert y.item() == pytest.approx(0.8807970779778823, abs=1e-15)
    assert tape.gradient(y, x).item() == pytest.approx(0.10499358540350662, abs=1e-15)
    with ad.GradientTape() as tape:
        y = ad.sigmoid(x)
    assert tape.gradient(y, x).item() == pytest.approx(0.10499358540350662, abs=1e-15)
