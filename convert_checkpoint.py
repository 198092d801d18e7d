#!/usr/bin/env python3
"""Converts a GPT-2 checkpoint between OpenAI's released layout and the Hugging Face format.

    python convert_checkpoint.py SRC DST [--force]

The direction follows from what SRC holds: a Hugging Face directory (config.json,
model.safetensors or its shards, vocab.json, merges.txt) becomes a model directory that the
sampling scripts load (hparams.json, model.ckpt.*, encoder.json, vocab.bpe); a released-layout
model directory becomes a Hugging Face one. The work is in src/hub_format.py, which the Hub
download of download_model.py shares.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import cli  # noqa: E402

PROG = "convert_checkpoint.py"
FORMATS = {"released": "released layout", "hub": "Hugging Face format"}


def convert(src, dst, force=False) -> int:
    """Converts the model in SRC into DST, in the other format.

    A Hugging Face directory (config.json + model.safetensors, or sharded
    model-0000x-of-0000y.safetensors with model.safetensors.index.json, + vocab.json and
    merges.txt) becomes a released-layout model directory; a released-layout one (or a
    fine-tuning run directory) becomes a Hugging Face directory that transformers loads.
    Configurations this project's GPT-2 cannot represent are refused, never approximated.

    Args:
        src: The model directory to convert.
        dst: The directory to create. It is written beside itself under a temporary name
            and renamed at the end, so it never holds a partial model.
        force: Replace DST if it exists and is not empty.
    Returns:
        The exit status: 0 when done, 1 if SRC cannot be converted or DST is refused,
        2 for a bad option, 130 after Ctrl-C, 143 on SIGTERM (DST untouched in each case).
    """
    def body() -> int:
        src_dir, dst_dir = cli.as_str("src", src), cli.as_str("dst", dst)
        replace = cli.as_bool("force", force)
        import samples_io
        samples_io.import_tensorflow_quietly()
        import hub_format
        try:
            source = hub_format.detect_format(src_dir)
            target = "hub" if source == "released" else "released"
            with progress_bar(f"{FORMATS[source]} -> {FORMATS[target]}") as bar:
                hub_format.convert(src_dir, dst_dir, force=replace, progress=bar)
        except ValueError as e:
            raise cli.Failure(str(e)) from None
        try:
            print(f"Wrote {dst_dir} ({FORMATS[target]}, from {src_dir}): "
                  f"{', '.join(sorted(os.listdir(dst_dir)))}")
            if target == "released":
                import model_paths
                print(f"Sample from it: {model_paths.sample_command(dst_dir)}")
            sys.stdout.flush()
        except cli.StreamError as e:  # exit 1 as for any lost output, but say DST is whole
            raise cli.Failure(f"{dst_dir} was written in full; only this report was lost: "
                              f"{e}") from None
        return cli.EXIT_OK

    return cli.guarded(PROG, body)


class progress_bar:
    """A tqdm bar of the bytes converted, shown only when stderr is a terminal."""

    def __init__(self, desc: str):
        self.desc = desc

    def __enter__(self):
        from tqdm import tqdm
        self.bar = tqdm(total=0, unit="B", unit_scale=True, file=sys.stderr,
                        disable=not sys.stderr.isatty(), desc=self.desc)
        return self

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        self.bar.close()


def main(argv=None) -> int:
    return cli.fire_main(convert, argv)


if __name__ == "__main__":
    sys.exit(main())
