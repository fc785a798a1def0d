"""A small classifier of a dataset, trained deterministically here, whose features measure
sample quality where the Inception network cannot (digits, MNIST, Fashion-MNIST offline).

The network (``SmallConvNet``): two 3x3 conv + ReLU + 2x2 average-pool stages (32, 64
channels; the second pool only for images of 16 px and more), a 128-unit ReLU layer (the
*features*) and a 10-way linear head. Recipe (``Recipe``): Adam 1e-3, batch 128, a fixed
number of steps on the training split with batches drawn from PRNGKey(seed) — the same
weights on every machine up to floating-point reduction order. The trained weights and
their test accuracy are cached in ``$DIFFUSION_CACHE_DIR`` (default
``~/.cache/diffusion``) under a name that includes the dataset, the image size and a hash
of the recipe, so the first use trains (seconds for digits, minutes for MNIST) and later
uses load.

Fréchet distance in these features (``evaluators.ClassifierFrechet``): samples against the
training split, with the real-data floor (the test split against the training split)
stated beside it; FD depends on the number of samples, so it is reported with it.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusion import trees
from diffusion.io import atomic
from diffusion.io.bars import announce

NUM_CLASSES = 10
FEATURES = 128


class SmallConvNet(nn.Module):
  """x [B, H, W, C] in [0, 1] -> (features [B, 128], logits [B, 10])."""

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(32, (3, 3), name="conv1")(x))
    h = nn.avg_pool(h, (2, 2), (2, 2))
    h = nn.relu(nn.Conv(64, (3, 3), name="conv2")(h))
    if h.shape[1] >= 8:
      h = nn.avg_pool(h, (2, 2), (2, 2))
    features = nn.relu(nn.Dense(FEATURES, name="features")(h.reshape(h.shape[0], -1)))
    return features, nn.Dense(NUM_CLASSES, name="logits")(features)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the classifier is trained; part of its cache name."""
  steps: int = 3000
  batch_size: int = 128
  lr: float = 1e-3
  seed: int = 0

  def digest(self) -> str:
    return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
                        ).hexdigest()[:8]


def cache_dir() -> str:
  return os.path.expanduser(os.environ.get("DIFFUSION_CACHE_DIR", "~/.cache/diffusion"))


@dataclasses.dataclass(frozen=True, eq=False)
class Classifier:
  """Trained weights and what they score; ``features`` and ``probs`` take [0, 1] images."""
  params: Any
  test_accuracy: float
  name: str
  temperature: float = 1.0   # divides the logits in probs (fitted on held-out images)

  def _apply(self, x01: np.ndarray, batch: int = 500):
    feats, logits = [], []
    for i in range(0, len(x01), batch):
      f, l = _apply(self.params, jnp.asarray(x01[i:i + batch], jnp.float32))
      feats.append(np.asarray(f, np.float64))
      logits.append(np.asarray(l, np.float64))
    return np.concatenate(feats), np.concatenate(logits)

  def features(self, x01: np.ndarray) -> np.ndarray:
    """[N, H, W, C] in [0, 1] -> float64 [N, 128]."""
    return self._apply(x01)[0]

  def probs(self, x01: np.ndarray) -> np.ndarray:
    """[N, H, W, C] in [0, 1] -> float64 [N, 10] class probabilities, softmax(logits / T)."""
    logits = self._apply(x01)[1] / self.temperature
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@jax.jit
def _apply(params, x):
  return SmallConvNet().apply({"params": params}, x)


def train(images: np.ndarray, labels: np.ndarray, recipe: Recipe = Recipe()) -> Any:
  """The classifier's parameters after ``recipe.steps`` Adam steps on (images, labels).

  images: uint8 [N, H, W, C]; labels: int [N]. Batches are i.i.d. draws from
  fold_in(PRNGKey(seed), step); one jitted step per batch.
  """
  x = jnp.asarray(images, jnp.float32) / 255.0
  y = jnp.asarray(labels, jnp.int32)
  key = jax.random.PRNGKey(recipe.seed)
  params = SmallConvNet().init(jax.random.fold_in(key, 2**31 - 1), x[:1])["params"]
  opt = optax.adam(recipe.lr)

  def loss_fn(params, xb, yb):
    logits = SmallConvNet().apply({"params": params}, xb)[1]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

  @jax.jit
  def step(params, opt_state, i):
    idx = jax.random.randint(jax.random.fold_in(key, i), (recipe.batch_size,), 0, len(y))
    grads = jax.grad(loss_fn)(params, x[idx], y[idx])
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  # A Python loop over one jitted step, not a lax.scan: XLA:CPU runs convolutions
  # inside a while-loop body over ten times slower (BENCHMARKS.md).
  opt_state = opt.init(params)
  for i in range(recipe.steps):
    params, opt_state = step(params, opt_state, jnp.int32(i))
  return params


def accuracy(params, images: np.ndarray, labels: np.ndarray) -> float:
  c = Classifier(params, float("nan"), "")
  return float(np.mean(np.argmax(c.probs(np.asarray(images, np.float32) / 255.0), 1) == labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
  """Temperature scaling (Guo et al. 2017, §4.2): the T > 0 minimising the mean negative
  log-likelihood of softmax(logits / T) on held-out (logits [N, K], labels [N]).

  A classifier trained to near-zero training loss is overconfident: its raw softmax calls
  ambiguous images certain. Dividing by the fitted T makes "probability >= 0.9" mean what it
  says on held-out data, so the share of confidently classified samples is a fair judge.
  Searched on a log grid of 0.25..50 (step 1%), float64.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  grid = np.exp(np.arange(np.log(0.25), np.log(50.0), 0.01))
  best, best_nll = 1.0, np.inf
  for temp in grid:
    z = logits / temp
    z = z - z.max(axis=1, keepdims=True)
    nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))
    if nll < best_nll:
      best, best_nll = float(temp), nll
  return best


def load_or_train(dataset: str, train_split: Dict[str, np.ndarray],
                  test_split: Dict[str, np.ndarray], recipe: Recipe = Recipe()) -> Classifier:
  """The cached classifier of ``dataset`` (train it on the first use).

  Args:
    dataset: a name for the cache, e.g. ``mnist_28px``.
    train_split, test_split: ``{"images": uint8 [N, H, W, C], "labels": int [N]}``.
  The temperature of its probabilities is fitted on the test split (:func:`fit_temperature`);
  features, accuracy and the cached weights do not depend on it.
  """
  name = f"classifier_{dataset}_{recipe.digest()}"
  path = os.path.join(cache_dir(), f"{name}.npz")
  if os.path.isfile(path):
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
    acc = float(arrays.pop("__test_accuracy__"))
    temperature = float(arrays.pop("__temperature__", np.nan))
    params = trees.unflatten(arrays, leaf=jnp.asarray)
    if np.isnan(temperature):   # a cache from before calibration: fit now if the data is here
      temperature = _fitted(params, test_split) if "images" in test_split else 1.0
    return Classifier(params, acc, name, temperature)
  announce(f"classifier_fid: training the {dataset} classifier once, on "
           f"{len(train_split['images'])} images (cached in {path})")
  params = train(train_split["images"], train_split["labels"], recipe)
  acc = accuracy(params, test_split["images"], test_split["labels"])
  temperature = _fitted(params, test_split)
  os.makedirs(cache_dir(), exist_ok=True)
  atomic.write_npz(path, __test_accuracy__=np.float64(acc),          # never half-written
                   __temperature__=np.float64(temperature),
                   **trees.flatten(jax.device_get(params), leaf=np.asarray))
  return Classifier(params, acc, name, temperature)


def _fitted(params, test_split: Dict[str, np.ndarray]) -> float:
  """The temperature of ``params``' logits fitted on the test split."""
  raw = Classifier(params, float("nan"), "")
  logits = raw._apply(np.asarray(test_split["images"], np.float32) / 255.0)[1]
  return fit_temperature(logits, test_split["labels"])
