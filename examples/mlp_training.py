"""Train a small MLP by hand: a synthetic dataset of three rings made with NumPy, an
``ad.nn.Sequential`` of ``Linear`` and ``ReLU`` layers, ``ad.optim.Adam``, minibatches and
``cross_entropy``. Prints the loss and accuracy after each epoch and checks that the model
ends far above chance (1/3 for three classes).

Run it: ``python examples/mlp_training.py`` (on CUDA where a GPU is usable, else the CPU).
"""
import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")

# Three classes: points on rings of radius 1, 2 and 3 with noise (fixed seed). No straight
# line separates them, so the hidden layers have something to learn.
rng = np.random.default_rng(0)
n_per_class, n_classes = 200, 3
labels = np.repeat(np.arange(n_classes), n_per_class)
radius = labels + 1.0 + rng.normal(scale=0.15, size=labels.size)
angle = rng.uniform(0, 2 * np.pi, size=labels.size)
points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
order = rng.permutation(labels.size)
points, labels = points[order].astype(np.float32), labels[order]
n_train = 480  # the first 480 points train, the other 120 test
x_train = ad.tensor(points[:n_train], device=device)
y_train = ad.tensor(labels[:n_train], device=device)  # int64 class indices
x_test = ad.tensor(points[n_train:], device=device)
y_test = ad.tensor(labels[n_train:], device=device)

ad.manual_seed(0)  # the layers' initial weights
model = ad.nn.Sequential(
    ad.nn.Linear(2, 32), ad.nn.ReLU(),
    ad.nn.Linear(32, 32), ad.nn.ReLU(),
    ad.nn.Linear(32, n_classes),
).to(device)
optimizer = ad.optim.Adam(model.parameters(), lr=0.01)  # made after moving the model
loss_fn = ad.nn.functional.cross_entropy

batch_size, epochs = 32, 8
for epoch in range(epochs):
    model.train()
    perm = rng.permutation(n_train)
    total_loss = 0.0
    for start in range(0, n_train, batch_size):
        batch = ad.tensor(perm[start:start + batch_size], device=device)
        optimizer.zero_grad()
        loss = loss_fn(model(x_train[batch]), y_train[batch])
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * batch.shape[0]
    model.eval()
    with ad.no_grad():  # evaluation builds no graph
        predicted = model(x_test).argmax(axis=1)
        accuracy = (predicted == y_test).astype(ad.float32).mean().item()
    print(f"epoch {epoch + 1}: train loss {total_loss / n_train:.4f}  "
          f"test accuracy {accuracy:.3f}")

assert accuracy > 0.9, f"the MLP should learn this dataset, got test accuracy {accuracy:.3f}"
print("ok: test accuracy well above chance (0.333)")
