"""Tiny GPT-2 checkpoints in the released layout, written as OpenAI's TF1 code wrote them."""
import json
import os
import shutil

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "data")


def shapes(h: dict) -> dict:
    """Variable names and shapes of a released checkpoint, written out independently of
    src/checkpoint.py so that a mistake there cannot hide here."""
    e = h["n_embd"]
    out = {"model/wte": (h["n_vocab"], e), "model/wpe": (h["n_ctx"], e)}
    for i in range(h["n_layer"]):
        pre = f"model/h{i}/"
        out.update({
            pre + "ln_1/g": (e,), pre + "ln_1/b": (e,),
            pre + "attn/c_attn/w": (1, e, 3 * e), pre + "attn/c_attn/b": (3 * e,),
            pre + "attn/c_proj/w": (1, e, e), pre + "attn/c_proj/b": (e,),
            pre + "ln_2/g": (e,), pre + "ln_2/b": (e,),
            pre + "mlp/c_fc/w": (1, e, 4 * e), pre + "mlp/c_fc/b": (4 * e,),
            pre + "mlp/c_proj/w": (1, 4 * e, e), pre + "mlp/c_proj/b": (e,),
        })
    out.update({"model/ln_f/g": (e,), "model/ln_f/b": (e,)})
    return out


def random_weights(h: dict, *, seed: int = 0, std: float = 0.2) -> dict:
    """Weights large enough that a wrong op shows; gains centred on 1."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in shapes(h).items():
        value = rng.normal(0.0, std, shape)
        if name.endswith("/g"):
            value += 1.0
        weights[name] = value.astype(np.float32)
    return weights


def write_tf1_checkpoint(model_dir: str, h: dict, weights: dict) -> None:
    """Writes the checkpoint exactly as the original TF1 code did: variable_scope,
    get_variable and a Saver, giving checkpoint, .index, .data and .meta files."""
    import tensorflow as tf
    v1 = tf.compat.v1
    os.makedirs(model_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        variables = []
        for name, value in weights.items():
            scope, leaf = name.rsplit("/", 1)
            with v1.variable_scope(scope):
                variables.append(v1.get_variable(leaf, initializer=value))
        saver = v1.train.Saver(variables)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, os.path.join(model_dir, "model.ckpt"))
    with open(os.path.join(model_dir, "hparams.json"), "w") as f:
        json.dump(h, f, indent=2)


def read_tf1_checkpoint(model_dir: str, h: dict) -> dict:
    """Restores every variable with a TF1 Saver, the way the original sampling code did."""
    import tensorflow as tf
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = {}
        for name, shape in shapes(h).items():
            scope, leaf = name.rsplit("/", 1)
            with v1.variable_scope(scope):
                variables[name] = v1.get_variable(leaf, shape=shape, dtype=tf.float32)
        saver = v1.train.Saver(list(variables.values()))
        with v1.Session(graph=graph) as sess:
            saver.restore(sess, v1.train.latest_checkpoint(model_dir))
            return {name: sess.run(var) for name, var in variables.items()}


def copy_vocabulary(model_dir: str) -> None:
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(os.path.join(DATA, name), os.path.join(model_dir, name))


def write_tf1_training_run(run_dir: str, h: dict, weights: dict, *, steps=(1, 2)) -> dict:
    """A run directory as nshepperd's fork of train.py writes it (gpt-2-simple's is the
    same): TF1 variables under `model/`, a `global_step`, an AdamOptimizer (slots
    `<weight>/Adam`, `<weight>/Adam_1`, `beta1_power`, `beta2_power`), and a Saver that
    saves `model-<step>` after the given steps, run from the directory above `checkpoint/`
    with a relative path, so the state file holds relative prefixes. Returns, for each
    saved step, the weights as they were saved."""
    import tensorflow as tf
    v1 = tf.compat.v1
    parent, name = os.path.split(os.path.abspath(run_dir))
    os.makedirs(run_dir, exist_ok=True)
    graph, saved = tf.Graph(), {}
    with graph.as_default():
        variables = {}
        for var_name, value in weights.items():
            scope, leaf = var_name.rsplit("/", 1)
            with v1.variable_scope(scope):
                variables[var_name] = v1.get_variable(leaf, initializer=value)
        global_step = v1.train.get_or_create_global_step()
        loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables.values()])
        train_op = v1.train.AdamOptimizer(1e-3).minimize(loss, global_step=global_step)
        saver = v1.train.Saver(max_to_keep=5)
        cwd = os.getcwd()
        os.chdir(parent)
        try:
            with v1.Session(graph=graph) as sess:
                sess.run(v1.global_variables_initializer())
                for step in range(1, max(steps) + 1):
                    sess.run(train_op)
                    if step in steps:
                        saver.save(sess, os.path.join(name, "model"), global_step=step)
                        saved[step] = sess.run(variables)
        finally:
            os.chdir(cwd)
    with open(os.path.join(run_dir, "hparams.json"), "w") as f:
        json.dump(h, f, indent=2)
    with open(os.path.join(run_dir, "counter"), "w") as f:
        f.write(str(max(steps) + 1))  # nshepperd's step counter file
    return saved


def unprivileged() -> list[str] | None:
    """A command prefix that runs a child without the right to read files whose mode denies
    it: nothing for a user other than root; for root (which reads a `chmod 000` file
    anyway), setpriv without the DAC-override capabilities. None if that is not possible."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
