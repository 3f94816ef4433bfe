"""Channel importance for channel pruning: the l1 filter norm and the improved naive-Bayes
score (definitions and the reading of Dai et al. 2021 in ``minidnn.compress.channels``)."""
from __future__ import annotations

import numpy as np

from ..data import ArrayDataset
from ..errors import ConfigError
from ..layers.base import Module
from ..layers.linear import Conv2d
from .trace import observing


def l1_scores(group) -> np.ndarray:
    """The l1 norm of each output channel's filter (weights into that channel)."""
    w = group.producer.weight.host_dense()
    return np.abs(w.reshape(w.shape[0], -1)).sum(axis=1, dtype=np.float64)


def consumer_features(model: Module, groups, images: np.ndarray,
                      batch_size: int = 250) -> list[np.ndarray]:
    """Per group, (N, channels): what its consumer reads from each channel for each image,
    averaged over positions (a conv input's H*W, a linear input's ``spread`` features)."""
    seen: list[list[np.ndarray]] = [[] for _ in groups]
    b = model.backend

    def note(i: int, x, y) -> None:
        host = b.to_host(x).astype(np.float64)
        n, c = host.shape[0], groups[i].width
        seen[i].append(host.reshape(n, c, -1).mean(axis=2))

    with observing(model, [g.consumer for g in groups], note):
        for start in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[start:start + batch_size], dtype=b.dtype)
            model.forward(b.from_host(batch))
    return [np.concatenate(parts) for parts in seen]


def label_information(a: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """I_c = H(Y) + mean_n log p(y_n | a_nc) of a Gaussian naive-Bayes model of each column
    of ``a`` (N, C) alone: class means, pooled within-class variance, empirical class prior.
    Nats, clipped at 0; 0 for a constant column."""
    classes, y = np.unique(labels, return_inverse=True)
    prior = np.bincount(y, minlength=len(classes)) / len(y)
    means = np.stack([a[y == k].mean(axis=0) for k in range(len(classes))])    # (K, C)
    resid = a - means[y]
    var = (resid ** 2).mean(axis=0)
    scale = a.var(axis=0)
    informative = scale > 1e-12 * max(1.0, float(np.abs(a).max(initial=0.0)) ** 2)
    var = np.maximum(var, 1e-6 * scale + 1e-30)
    loglik = -((a[:, None, :] - means[None]) ** 2) / (2 * var) + np.log(prior)[None, :, None]
    top = loglik.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(loglik - top).sum(axis=1))             # (N, C)
    log_post = loglik[np.arange(len(y)), y] - log_norm
    entropy = -(prior * np.log(prior)).sum()
    info = np.maximum(entropy + log_post.mean(axis=0), 0.0)
    return np.where(informative, info, 0.0)


def consumer_column_norms(group) -> np.ndarray:
    """||W_consumer[:, c]||_2 over every weight that reads channel c."""
    w = group.consumer.weight.host_dense()
    if isinstance(group.consumer, Conv2d):
        per = (w ** 2).sum(axis=(0, 2, 3))
    else:
        per = (w ** 2).reshape(w.shape[0], group.width, group.spread).sum(axis=(0, 2))
    return np.sqrt(per.astype(np.float64))


def _relative(v: np.ndarray) -> np.ndarray:
    mean = v.mean()
    return v / mean if mean > 0 else np.ones_like(v)


def nb_scores(model: Module, groups, data: ArrayDataset, samples: int = 1024,
              seed: int = 0) -> list[np.ndarray]:
    """The improved naive-Bayes score of every channel of every group, from ``samples``
    training images drawn with ``seed``: (I_c / mean I) * (S_c / mean S)."""
    if len(data) < 2 or samples < 2:
        raise ConfigError("the nb score needs at least 2 calibration images")
    pick = np.random.default_rng(seed).permutation(len(data))[:samples]
    labels = np.asarray(data.labels)[pick]
    if len(np.unique(labels)) < 2:
        raise ConfigError("the nb score needs calibration images of at least 2 classes")
    feats = consumer_features(model, groups, np.asarray(data.images)[pick])
    out = []
    for g, a in zip(groups, feats):
        info = label_information(a, labels)
        share = np.sqrt((a ** 2).mean(axis=0)) * consumer_column_norms(g)
        out.append(_relative(info) * _relative(share))
    return out


def channel_scores(model: Module, groups, score: str, data: ArrayDataset | None = None,
                   samples: int = 1024, seed: int = 0) -> list[np.ndarray]:
    """One score array per group ('nb' needs ``data``: the training set)."""
    if score == "l1":
        return [l1_scores(g) for g in groups]
    if score == "nb":
        if data is None:
            raise ConfigError("the nb score needs training data (--data) for its calibration "
                              "images")
        return nb_scores(model, groups, data, samples, seed)
    raise ConfigError(f"unknown channel score {score!r}: choose nb or l1")
