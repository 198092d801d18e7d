#!/usr/bin/env python3
"""Fine-tunes GPT-2 on your text, on one device or many (tf.distribute), into a run
directory `checkpoint/<run_name>/` that the sampling scripts load as a model:

    python3 train.py --dataset my_text.txt --model_name 124M --steps 1000
    python3 src/interactive_conditional_samples.py --models_dir checkpoint --model_name run1

The flags are those of nshepperd's fork of OpenAI's repository where it has them.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import cli  # noqa: E402
from cli import UsageError, as_bool, as_float, as_int, as_str  # noqa: E402

PROG = "train.py"
DTYPES = ("float32", "bfloat16", "float16")


def train(dataset=None, model_name='124M', models_dir='models', run_name='run1',
          checkpoint_dir='checkpoint', restore_from='latest', batch_size=1,
          accumulate_gradients=1, learning_rate=0.00002, optimizer='adam', *,
          warmup_steps=0, decay='constant', decay_steps=None, min_learning_rate=0.0,
          weight_decay=0.01, grad_clip=None, steps=None, window=None, save_every=1000,
          max_checkpoints=5, sample_every=100, sample_length=None, sample_num=1, top_k=40,
          top_p=1.0, samples_dir='samples', val_dataset=None, val_batch_size=2,
          val_batch_count=40, val_every=0, only_train_transformer_layers=False,
          memory_saving_gradients=False, dtype='float32', seed=None,
          encoding='utf-8') -> int:
    """Fine-tunes a GPT-2 model on a dataset; Ctrl-C or SIGTERM saves, then stops.

    Args:
        dataset: Training data: a text file, a directory, a glob, an .npz or a token
            file (.bin/.tokens) from encode.py. Text is encoded on the fly; .csv files
            give their first column, .jsonl files their "text" field; <|endoftext|>
            (id 50256) separates documents.
        model_name: The model to start from: a directory under models_dir.
        models_dir: Directory that holds the model directories.
        run_name: Name of this run: checkpoints go to checkpoint_dir/run_name, samples to
            samples_dir/run_name.
        checkpoint_dir: Directory that holds the run directories.
        restore_from: "latest" continues the run's newest checkpoint (weights, optimizer,
            step, data order), or starts from model_name when the run has none; "fresh"
            starts from model_name; "random" trains from scratch, from GPT-2's random
            initialisation with model_name's hparams.json (its directory needs no
            weights); or a model directory or checkpoint prefix to start from (weights
            only).
        batch_size: Windows per step on each device (replica).
        accumulate_gradients: Micro-batches averaged into each step: N x batch_size trains
            exactly like one batch of N * batch_size.
        learning_rate: Peak learning rate.
        optimizer: adam (TF1's AdamOptimizer: beta1 0.9, beta2 0.999, epsilon 1e-8),
            adamw (adam + decoupled weight decay), sgd (no momentum), or adafactor
            (factored second moments, the least memory).
        warmup_steps: Steps of linear warm-up from 0 to learning_rate.
        decay: Learning-rate schedule after warm-up: constant, linear or cosine.
        decay_steps: Step at which the decay reaches min_learning_rate (default: steps).
        min_learning_rate: Learning rate at the end of the decay.
        weight_decay: adamw's decoupled weight decay (on matrices and embeddings only).
        grad_clip: Clip the gradients' global norm to this value; off unless given.
        steps: Stop when the run reaches this many optimizer steps (counting the steps
            of the checkpoint continued); by default, train until Ctrl-C.
        window: Tokens per training window (default: n_ctx); each trains its
            window - 1 next-token predictions.
        save_every: Save a checkpoint every N steps (and at the end, and on Ctrl-C).
        max_checkpoints: Keep the newest N checkpoints.
        sample_every: Write samples every N steps; 0 turns sampling off.
        sample_length: Tokens per sample (default: n_ctx - 1).
        sample_num: Samples each time.
        top_k: Samples draw among the k likeliest tokens (0: no limit).
        top_p: Samples draw among the likeliest tokens whose probabilities add up to
            top_p (1 means no limit).
        samples_dir: Directory for the samples: samples_dir/run_name/samples-<step>.
        val_dataset: Data for the validation loss (default: the training dataset).
        val_batch_size: Windows per validation batch.
        val_batch_count: Validation batches; the windows are the same in every run.
        val_every: Compute the validation loss every N steps (and at the start); 0: never.
        only_train_transformer_layers: Train the transformer blocks only, not the
            embeddings and the final layer norm.
        memory_saving_gradients: Recompute each block's activations in the backward pass
            instead of keeping them, for much less memory and about a third more compute.
        dtype: Compute type: float32, bfloat16 or float16 (with loss scaling); weights
            and optimizer state stay float32.
        seed: Integer seed of the data order and samples (default: random, then kept
            by the run, so a continued run draws as if it had never stopped).
        encoding: Encoding of text datasets.
    Returns:
        The exit status: 0 when done, 1 on a failure (one line says why), 2 for a bad
        option, 130 after Ctrl-C and 143 on SIGTERM (both save first).
    """
    flags = dict(locals())

    def body() -> int:
        from samples_io import import_tensorflow_quietly
        import_tensorflow_quietly()  # before optim and fine_tune import it noisily
        import fine_tune
        return fine_tune.run(parse(**flags), PROG)

    return cli.guarded(PROG, body)


def parse(*, dataset, learning_rate, optimizer, warmup_steps, decay, decay_steps,
          min_learning_rate, weight_decay, grad_clip, steps, window, seed, top_p, dtype,
          sample_length, val_dataset, **flags):
    """Settings from the flags, every value cast and range-checked (exit 2 if wrong)."""
    import optim
    import text_corpus
    from fine_tune import Settings
    if dataset is None:
        raise UsageError("--dataset is required: a text file, directory, glob, .npz or "
                         "token file (encode.py makes the last two)")
    steps = None if steps is None else as_int("steps", steps, minimum=1)
    lr = as_float("learning_rate", learning_rate)
    if not lr > 0:
        raise UsageError(f"--learning_rate must be positive, got {lr}")
    top_p = as_float("top_p", top_p)
    if not 0 < top_p <= 1:
        raise UsageError(f"--top_p must be in (0, 1] (1 disables it), got {top_p}")
    if str(dtype) not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        text_corpus.check_encoding(str(flags["encoding"]))
    except ValueError as e:
        raise UsageError(str(e)) from None
    clip = 0.0 if grad_clip is None else as_float("grad_clip", grad_clip)
    if clip < 0:
        raise UsageError(f"--grad_clip must be positive, got {clip}")
    try:
        schedule = optim.Schedule(
            lr, warmup_steps=as_int("warmup_steps", warmup_steps, minimum=0),
            decay=str(decay), min_learning_rate=as_float("min_learning_rate",
                                                         min_learning_rate),
            decay_steps=steps if decay_steps is None else as_int("decay_steps", decay_steps,
                                                                 minimum=1))
        adam = optim.Optimizer(str(optimizer), weight_decay=as_float("weight_decay",
                                                                     weight_decay))
    except ValueError as e:
        raise UsageError(str(e)) from None
    counts = {name: as_int(name, flags.pop(name), minimum=minimum) for name, minimum in (
        ("batch_size", 1), ("accumulate_gradients", 1), ("save_every", 1),
        ("max_checkpoints", 1), ("sample_every", 0), ("sample_num", 1), ("top_k", 0),
        ("val_batch_size", 1), ("val_batch_count", 1), ("val_every", 0))}
    switches = {name: as_bool(name, flags.pop(name)) for name in (
        "only_train_transformer_layers", "memory_saving_gradients")}
    names = {name: as_str(name, value) for name, value in flags.items()}
    return Settings(
        dataset=as_str("dataset", dataset), optimizer=adam, schedule=schedule,
        grad_clip=clip, steps=steps, dtype=str(dtype), top_p=top_p,
        window=None if window is None else as_int("window", window, minimum=2),
        seed=None if seed is None else as_int("seed", seed, minimum=0),
        sample_length=None if sample_length is None else as_int("sample_length",
                                                                sample_length, minimum=1),
        val_dataset=None if val_dataset is None else as_str("val_dataset", val_dataset),
        **counts, **switches, **names)


def main(argv=None) -> int:
    return cli.fire_main(train, argv)


if __name__ == "__main__":
    sys.exit(main())
