"""Training computes what independent implementations compute: one SGD step against Hugging
Face transformers with torch autograd, and every optimizer's update against NumPy."""
import os

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import gpt2_fixtures as fx
import hub_format
import optim
import train_loop
from model import HParams
from train_helpers import TRAIN_TINY, make_workdir, train_main, weights


def torch_sgd_step(h: dict, flat: dict, window: list, lr: float) -> dict:
    """The weights after one SGD step on the window's mean next-token loss, by
    transformers' GPT2LMHeadModel and torch autograd (float64 for a sharp reference)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hparams = HParams(**h)
    config = dict(hub_format.config_from_hparams(hparams), attn_pdrop=0.0, embd_pdrop=0.0,
                  resid_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config),
                                         ).to(torch.float64).eval()
    names = hub_format.hub_names(hparams)
    state = {"transformer." + hub: torch.tensor(np.asarray(flat[ours], np.float64).reshape(
        hub_format.hub_shape(flat[ours].shape))) for hub, ours in names.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    ids = torch.tensor([window])
    model(ids, labels=ids).loss.backward()
    by_name = dict(model.named_parameters())
    return {ours: (by_name["transformer." + hub] - lr * by_name["transformer." + hub].grad)
            .detach().numpy().reshape(flat[ours].shape) for hub, ours in names.items()}


def test_one_sgd_step_equals_transformers_with_torch_autograd(tmp_path, monkeypatch):
    monkeypatch.chdir(make_workdir(tmp_path))
    window = np.random.default_rng(0).integers(0, 50257, TRAIN_TINY["n_ctx"])
    np.savez(tmp_path / "one.npz", window.astype(np.int32))  # exactly one n_ctx window
    code = train_main("--optimizer", "sgd", "--learning_rate", 0.1, "--batch_size", 1,
                      "--steps", 1, "--restore_from", "fresh", "--run_name", "sgd",
                      dataset="one.npz")
    assert code == 0
    before = weights("models/tiny")
    after = weights("checkpoint/sgd")
    expected = torch_sgd_step(TRAIN_TINY, before, window.tolist(), 0.1)
    assert sorted(expected) == sorted(checkpoint.variable_shapes(HParams(**TRAIN_TINY)))
    moved = 0
    for name, value in expected.items():
        np.testing.assert_allclose(after[name], value, rtol=0, atol=1e-5, err_msg=name)
        moved += not np.allclose(value, before[name], rtol=0, atol=1e-4)
    assert moved > len(expected) // 2  # the step changed most variables measurably
    assert int(after["global_step"]) == 1


# Optimizer updates against NumPy, on the same gradients.

def numpy_step(name, w, g, t, lr, state):
    """Step t of each optimizer in float64, written from the papers / TF1's documentation."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    if name == "sgd":
        return w - lr * g
    if name in ("adam", "adamw"):
        if name == "adamw" and w.ndim > 1:
            w = w - lr * 0.01 * w
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        return w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    rho = 1 - t ** -0.8  # adafactor: factored second moments, update RMS clipped to 1
    g2 = g * g + 1e-30
    if w.ndim >= 2:
        r = state["r"] = rho * state.get("r", 0) + (1 - rho) * g2.mean(-1)
        c = state["c"] = rho * state.get("c", 0) + (1 - rho) * g2.mean(-2)
        v = r[..., :, None] * c[..., None, :] / r.mean(-1)[..., None, None]
    else:
        v = state["v"] = rho * state.get("v", 0) + (1 - rho) * g2
    u = g / np.sqrt(v)
    return w - lr * u / max(1.0, np.sqrt(np.mean(u * u)))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adafactor"])
@pytest.mark.parametrize("shape", [[1, 6, 9], [7]])
def test_each_optimizer_equals_numpy_on_the_same_gradients(name, shape):
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=shape)
    grads = [rng.normal(size=shape) * 10.0 ** rng.integers(-3, 2) for _ in range(5)]
    opt = optim.Optimizer(name)
    var = tf.Variable(w0.astype(np.float32))
    slots = [tf.Variable(tf.zeros(s)) for s in opt.slot_shapes("w", shape).values()]
    for t, g in enumerate(grads, 1):
        opt.apply(var, tf.constant(g, tf.float32), slots, tf.constant(1e-2), tf.constant(float(t)))
    expected, state = w0, {}
    for t, g in enumerate(grads, 1):
        expected = numpy_step(name, expected, g, t, 1e-2, state)
    np.testing.assert_allclose(var.numpy(), expected, rtol=0, atol=1e-6)
    assert not np.allclose(expected, w0, atol=1e-3)


def test_adam_in_the_training_step_equals_numpy_adam_on_its_gradients():
    """Three steps of the distributed step with Adam: each equals NumPy's Adam applied to
    the step's gradients (taken from the trainer's own gradient function at the same
    weights: the key biases' true gradient is 0, so their float noise must be the same
    noise), with the moments carried in float64."""
    h = dict(TRAIN_TINY, n_vocab=97)
    hparams = HParams(**h)
    start = fx.random_weights(h, seed=5)
    trainer = train_loop.Trainer(tf.distribute.get_strategy(), hparams,
                                 optimizer=optim.Optimizer("adam"),
                                 initial=lambda n, s: start.get(n), train=lambda n: True)
    gradients = tf.function(trainer._gradients, autograph=False)
    rng = np.random.default_rng(1)
    states = {n: {} for n in start}
    for t in range(1, 4):
        windows = rng.integers(0, 97, (1, 2, 16)).astype(np.int32)
        grads, loss = gradients(tf.constant(windows))
        before = {n: v.numpy().astype(np.float64) for n, v in trainer.weights.items()}
        trained_loss, _ = trainer.step(windows, 1e-3)
        assert trained_loss == pytest.approx(float(loss), abs=1e-6)
        assert int(trainer.global_step.numpy()) == t
        for n, g in zip(trainer.train_names, grads):
            expected = numpy_step("adam", before[n], g.numpy().astype(np.float64), t, 1e-3,
                                  states[n])
            np.testing.assert_allclose(trainer.weights[n].numpy(), expected, rtol=0,
                                       atol=1e-6, err_msg=f"{n} at step {t}")


def test_validation_loss_through_the_scoring_core_equals_the_training_loss():
    import validation
    h = dict(TRAIN_TINY, n_vocab=97)
    start = fx.random_weights(h, seed=6)
    trainer = train_loop.Trainer(tf.distribute.get_strategy(), HParams(**h),
                                 optimizer=optim.Optimizer("sgd"),
                                 initial=lambda n, s: start.get(n), train=lambda n: True)
    windows = np.random.default_rng(2).integers(0, 97, (6, 16)).astype(np.int32)
    expected = float(train_loop.forward_loss(trainer.params, tf.constant(windows),
                                             hparams=HParams(**h)))
    assert validation.Validation(trainer, windows, 4).loss() == pytest.approx(expected, abs=1e-5)
