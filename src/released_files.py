"""The released GPT-2 checkpoints as OpenAI published them: where they are, the seven files
of each, and what those files must be (size and sha256, with the public source of each)."""
from __future__ import annotations

from download import Pin

DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
DATA = "model.ckpt.data-00000-of-00001"
FILENAMES = ("checkpoint", "encoder.json", "hparams.json", DATA, "model.ckpt.index",
             "model.ckpt.meta", "vocab.bpe")


def released_pins() -> dict[str, dict[str, Pin]]:
    """Size and sha256 of the released files, as far as public sources give them.

    124M: sizes as checked against the server by rasbt/LLMs-from-scratch
    (ch05/01_main-chapter-code/tests.py); sha256 as listed by MontrealAI/AGI-Alpha-Agent-v0
    (scripts/download_openai_gpt2.py), whose `checkpoint` and `hparams.json` digests equal those
    of the files' published text, and whose vocabulary digests equal tiktoken's.
    355M: hobg0blin/ganterbury-tales committed models/355M (commit da18c90, Nov 2019): the
    checkpoint and hparams.json as files (sha256 computed here), the three model.ckpt files as
    Git LFS pointers, which record each file's sha256 and size; the sizes equal
    LLMs-from-scratch's.
    774M, 1558M: the vocabulary (every size ships the same two files) and the data file's
    size, 4 bytes per float32 parameter: n_vocab*n_embd + n_ctx*n_embd + n_layer*(12*n_embd**2
    + 13*n_embd) + 2*n_embd, which gives exactly the published sizes of 124M and 355M. No
    public source found gives their other files; download_model.py bounds their size.
    """
    vocab = {
        "encoder.json": Pin(1042301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        "vocab.bpe": Pin(456318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    }
    checkpoint = Pin(77, "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb")
    return {
        "124M": {**vocab, "checkpoint": checkpoint,
                 "hparams.json": Pin(90, "d9d56e4121c427164e0c55c6f03c08e1daf9002b9b672825112d19097b680318"),
                 DATA: Pin(497759232, "2060c885360cc0cf41d7a6dbc4d24b5127aae20260c8b5ae521b5a6578407118"),
                 "model.ckpt.index": Pin(5215, "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687"),
                 "model.ckpt.meta": Pin(471155, "4668c448fa11531fd6700460487f73e82d3272960cea942252f8744bf225c77b")},
        "355M": {**vocab, "checkpoint": checkpoint,
                 "hparams.json": Pin(91, "310dfdb1f0c786b79d93459eaa470f3978d873bdc3e1f9fed1cad24d9dd0b1f6"),
                 DATA: Pin(1419292672, "22b4212602a087d1cdeec3509648f4d7b1f181eaa33ce0f3c688fbfb732d622f"),
                 "model.ckpt.index": Pin(10399, "4490e7b1f5ec0abfc1e111fcd27cdda7cb280c597ba0a885c364134e62ce43aa"),
                 "model.ckpt.meta": Pin(926519, "06e1a92057d2a4fbdc483bd1f61a26cc274f1c999b84c6d9e9c50aa8d5ead44a")},
        "774M": {**vocab, DATA: Pin(4 * 774_030_080)},
        "1558M": {**vocab, DATA: Pin(4 * 1_557_611_200)},
    }
