#!/usr/bin/env python3
"""Encodes text into a token dataset for train.py, once, instead of at every run.

    python3 encode.py my_texts/ dataset.npz            # nshepperd's format: np.load-able
    python3 encode.py corpus.txt corpus.bin            # uint16 ids, memory-mapped by train.py

Input is a text file, a directory or a glob; `.csv` files give their first column (after
the header row), `.jsonl` files their "text" field, other files their text, split into
documents at the literal "<|endoftext|>". Documents are joined by the real <|endoftext|>
token (id 50256), never by the five ordinary tokens that text encodes to. A `.bin` or
`.tokens` output is written as it is encoded, so a corpus larger than memory fits.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

import cli  # noqa: E402
from cli import Failure, UsageError, as_str  # noqa: E402

PROG = "encode.py"


def encode(in_text=None, out=None, model_name='124M', models_dir='models',
           encoding='utf-8') -> int:
    """Encodes text files into a token dataset (.npz, or .bin/.tokens for large corpora).

    Args:
        in_text: A text file, a directory (every file in it), or a glob (quoted).
        out: The dataset to write: NAME.npz (one array, nshepperd's format) or NAME.bin /
            NAME.tokens (little-endian uint16 ids, read by train.py without loading them).
            Written under a temporary name and renamed when complete.
        model_name: The model whose vocabulary to use: a directory under models_dir.
        models_dir: Directory that holds the model directories.
        encoding: The text's encoding (e.g. latin-1, cp1252), if not UTF-8.
    Returns:
        The exit status: 0 when written, 1 on a failure (one line says why), 2 for a bad
        option, 130 after Ctrl-C (nothing is left under the output name).
    """
    def body() -> int:
        if in_text is None or out is None:
            raise UsageError("give the input and the output: encode.py IN_TEXT OUT.npz "
                             "(or OUT.bin for a memory-mapped token file)")
        source, target = as_str("in_text", in_text), as_str("out", out)
        if not target.lower().endswith((".npz", ".bin", ".tokens")):
            raise UsageError(f"{target}: the output must end in .npz, .bin or .tokens")
        import encoder
        import model_paths
        import text_corpus
        try:
            text_corpus.check_encoding(str(encoding))
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            folder = model_paths.model_dir_for(as_str("model_name", model_name),
                                               as_str("models_dir", models_dir))
            enc = encoder.get_encoder(os.path.basename(folder), os.path.dirname(folder))
            if enc.n_vocab > 1 << 16 and not target.lower().endswith(".npz"):
                raise ValueError(f"{folder} has {enc.n_vocab} tokens, more than a uint16 "
                                 f"token file holds: write an .npz instead")
            paths = text_corpus.expand(source)
            report = lambda path, n: cli.note(PROG, f"{path}: {n:,} tokens")  # noqa: E731
            count = write(target, text_corpus.encode_files(
                paths, enc, encoding=str(encoding), progress=report))
        except ValueError as e:
            raise Failure(str(e)) from None
        if count == 0:
            raise Failure(f"{source} holds no text: nothing written to {target}")
        cli.note(PROG, f"wrote {count:,} tokens from {len(paths)} file(s) to {target}")
        return cli.EXIT_OK

    return cli.guarded(PROG, body)


def write(target: str, pieces) -> int:
    """Writes the token arrays to `target` atomically; returns how many tokens."""
    import numpy as np
    temporary = f"{target}.tmp-{os.getpid()}"
    count = 0
    try:
        if target.lower().endswith(".npz"):
            arrays = list(pieces)
            count = sum(len(a) for a in arrays)
            if count:
                with open(temporary, "wb") as f:
                    np.savez_compressed(f, np.concatenate(arrays))
        else:
            with open(temporary, "wb") as f:
                for array in pieces:
                    f.write(np.asarray(array, "<u2").tobytes())
                    count += len(array)
        if count:
            os.replace(temporary, target)
    except OSError as e:
        raise ValueError(f"cannot write {target} ({e.strerror})") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return count


def main(argv=None) -> int:
    return cli.fire_main(encode, argv)


if __name__ == "__main__":
    sys.exit(main())
