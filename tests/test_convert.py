"""convert_checkpoint.py against Hugging Face transformers as the independent reference: a
random GPT-2 made by transformers converts to the released layout and samples HF's greedy
tokens; a released-layout model converts to a directory transformers loads with the same
logits and tokenizer; the round trip is bit-identical; 6 layers, shards, the `transformer.`
prefix, mask buffers, a tied lm_head and half-precision files are read.

Each TensorFlow process costs seconds, so only the acceptance runs are processes; the rest
call the script's `main` in this process.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import gpt2_fixtures as fx
from conftest import CLI_TINY, parse_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import convert_checkpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_tracebacks")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CONVERT = os.path.join(ROOT, "convert_checkpoint.py")
PROMPT = "Hello, my name is"
TOKENS = [[15496, 11, 616, 1438, 318, 50256, 0, 995, 31373, 1, 50000, 7, 8, 9, 10, 11]]


def hf_gpt2(*, n_layer=2, n_embd=16, n_head=2, n_positions=64, seed=0):
    """A GPT-2 made by transformers, with weights large enough that a wrong op shows."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=50257, n_positions=n_positions,
                                     n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # wte once: lm_head is tied
            parameter.normal_(0.0, 0.2)
            if ".ln_" in name and name.endswith("weight"):
                parameter += 1.0
    return model


def save_hub(model, path, **options) -> str:
    """save_pretrained's safetensors files plus GPT-2's vocabulary under the Hub's names."""
    model.save_pretrained(path, safe_serialization=True, **options)
    shutil.copy(os.path.join(fx.DATA, "encoder.json"), os.path.join(path, "vocab.json"))
    shutil.copy(os.path.join(fx.DATA, "vocab.bpe"), os.path.join(path, "merges.txt"))
    return str(path)


def hf_logits(model, tokens) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.numpy()


def our_logits(model_dir, tokens) -> np.ndarray:
    import checkpoint
    import model
    hparams, params = checkpoint.load(model_dir)
    tokens = [row[:hparams.n_ctx] for row in tokens]
    return model.model(params, tokens, hparams=hparams)["logits"].numpy()


def converted(*args) -> int:
    return convert_checkpoint.main([str(a) for a in args])


def user_env() -> dict:
    """The user's environment: TensorFlow's log level is left to the script."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}


@pytest.fixture(scope="module")
def hf_model():
    return hf_gpt2()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, hf_model):
    return save_hub(hf_model, tmp_path_factory.mktemp("hub") / "hf-tiny")


@pytest.fixture(scope="module")
def hf_converted(tmp_path_factory, hf_dir):
    """The HF model converted by the script run as a process, from a directory other than
    the checkout into its `models/hf`: (models dir, the finished process)."""
    here = tmp_path_factory.mktemp("converted")
    done = subprocess.run([sys.executable, CONVERT, hf_dir, os.path.join("models", "hf")],
                          capture_output=True, text=True, env=user_env(), timeout=120, cwd=here)
    assert done.returncode == 0, done.stderr
    return str(here / "models"), done


def test_hf_model_converted_samples_hf_greedy_tokens(hf_converted, hf_model):
    import encoder
    models, conversion = hf_converted
    assert conversion.stderr == ""  # no TensorFlow start-up chatter, no warnings
    assert "Wrote" in conversion.stdout
    # The command it prints works when pasted where the conversion ran.
    printed = conversion.stdout.split("Sample from it: ")[1].strip()
    length = 16
    done = subprocess.run(
        f"{printed} --top_k 1 --length {length} --nostream", shell=True,
        cwd=os.path.dirname(models), input=PROMPT + "\n", capture_output=True, text=True,
        env=user_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    enc = encoder.get_encoder("hf", models)
    ids = enc.encode(PROMPT)
    with torch.no_grad():
        for _ in range(length):  # HF's greedy tokens, one full forward pass per token
            ids.append(int(hf_model(torch.tensor([ids])).logits[0, -1].argmax()))
    assert parse_samples(done.stdout) == [(1, enc.decode(ids[-length:]))]


def test_hf_model_converted_logits_match(hf_converted, hf_model):
    models, _ = hf_converted
    ours = our_logits(os.path.join(models, "hf"), TOKENS)
    np.testing.assert_allclose(ours, hf_logits(hf_model, TOKENS), atol=1e-4, rtol=0)
    with open(os.path.join(models, "hf", "hparams.json")) as f:
        assert json.load(f) == dict(n_vocab=50257, n_ctx=64, n_embd=16, n_head=2, n_layer=2)
    for ours, released in (("encoder.json", "encoder.json"), ("vocab.bpe", "vocab.bpe")):
        with open(os.path.join(models, "hf", ours), "rb") as a, \
                open(os.path.join(fx.DATA, released), "rb") as b:
            assert a.read() == b.read()  # OpenAI's files, byte for byte


@pytest.fixture(scope="module")
def released_to_hub(tmp_path_factory, cli_models):
    hub = tmp_path_factory.mktemp("to-hub") / "tiny-hf"
    assert converted(os.path.join(cli_models, "tiny"), hub) == 0
    return str(hub)


def test_released_model_loads_in_transformers(released_to_hub, cli_models):
    model, info = transformers.GPT2LMHeadModel.from_pretrained(released_to_hub,
                                                               output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ours = our_logits(os.path.join(cli_models, "tiny"), TOKENS)
    np.testing.assert_allclose(hf_logits(model.eval(), TOKENS), ours, atol=1e-4, rtol=0)
    assert sorted(os.listdir(released_to_hub)) == sorted([
        "config.json", "generation_config.json", "merges.txt", "model.safetensors",
        "README.md", "tokenizer_config.json", "vocab.json"])
    with open(os.path.join(released_to_hub, "README.md")) as f:
        assert "`tiny`" in f.read()  # the card names its source


def test_released_model_tokenizer_matches_encoder(released_to_hub):
    import encoder
    tokenizer = transformers.AutoTokenizer.from_pretrained(released_to_hub)
    enc = encoder.Encoder(*read_released_vocabulary())
    texts = ["Hello world", "  leading and   inner spaces\n\n\ttabs",
             "naïve café 日本語 🤗",
             "it's we'll they've I'd", "1234567 3.14159", "\u00a0\u200b odd spaces"]
    for text in texts:
        assert tokenizer.encode(text) == enc.encode(text), text
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == 50256


def read_released_vocabulary():
    with open(os.path.join(fx.DATA, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(fx.DATA, "vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(line.split(" ")) for line in f.read().split("\n")[1:] if line]
    return vocab, merges


def test_round_trip_is_bit_identical(tmp_path, released_to_hub, cli_models):
    import hub_format
    import tensorflow as tf
    back = tmp_path / "back"
    calls = []  # through the module the Hub download uses, with its progress callback
    assert hub_format.convert(released_to_hub, str(back),
                              progress=lambda *c: calls.append(c)) == "hub"
    total = 4 * sum(np.prod(shape) for shape in fx.shapes(CLI_TINY).values())
    assert len(calls) == len(fx.shapes(CLI_TINY)) and calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})
    original = tf.train.load_checkpoint(os.path.join(cli_models, "tiny", "model.ckpt"))
    again = tf.train.load_checkpoint(str(back / "model.ckpt"))
    names = set(fx.shapes(CLI_TINY))
    assert set(again.get_variable_to_shape_map()) == names
    for name in names:
        a, b = original.get_tensor(name), again.get_tensor(name)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    for name in ("encoder.json", "vocab.bpe"):
        assert (back / name).read_bytes() == open(os.path.join(fx.DATA, name), "rb").read()


def test_hub_tensors_are_the_released_ones_under_hub_names(released_to_hub, cli_weights):
    """The names of the issue: no transpose, [1, nx, nf] -> [nx, nf], g/b -> weight/bias,
    no lm_head, no prefix."""
    from safetensors.numpy import load_file
    tensors = load_file(os.path.join(released_to_hub, "model.safetensors"))
    assert len(tensors) == len(cli_weights)
    np.testing.assert_array_equal(tensors["wte.weight"], cli_weights["model/wte"])
    np.testing.assert_array_equal(tensors["h.1.attn.c_attn.weight"],
                                  cli_weights["model/h1/attn/c_attn/w"][0])
    np.testing.assert_array_equal(tensors["h.0.mlp.c_proj.bias"],
                                  cli_weights["model/h0/mlp/c_proj/b"])
    np.testing.assert_array_equal(tensors["ln_f.weight"], cli_weights["model/ln_f/g"])


def test_training_run_directory_converts_its_newest_checkpoint(tmp_path, cli_weights):
    """A run directory as TF1 training scripts write it (`model-<step>` prefixes named by the
    state file, a step counter and Adam slots beside the weights) converts like a released
    model, from the checkpoint its state file names."""
    from safetensors.numpy import load_file
    run = tmp_path / "checkpoint" / "run1"
    saved = fx.write_tf1_training_run(str(run), CLI_TINY, cli_weights, steps=(1, 2))
    fx.copy_vocabulary(str(run))
    assert converted(run, tmp_path / "hf") == 0
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert len(tensors) == len(cli_weights)  # weights only: no step, no optimizer slots
    assert not np.array_equal(saved[1]["model/wte"], saved[2]["model/wte"])
    np.testing.assert_array_equal(tensors["wte.weight"], saved[2]["model/wte"])
    np.testing.assert_array_equal(tensors["h.1.mlp.c_fc.weight"],
                                  saved[2]["model/h1/mlp/c_fc/w"][0])
    assert "checkpoint `model-2` of the training run directory `run1`" in (
        tmp_path / "hf" / "README.md").read_text()
    model = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf")).eval()
    np.testing.assert_allclose(hf_logits(model, TOKENS), our_logits(str(run), TOKENS),
                               atol=1e-4, rtol=0)


def test_distilgpt2_shaped_sharded_model(tmp_path):
    """distilgpt2's 6 layers, saved in shards with an index."""
    model = hf_gpt2(n_layer=6, n_embd=24, n_head=3, n_positions=48, seed=4)
    src = save_hub(model, tmp_path / "distil", max_shard_size="1MB")
    assert os.path.exists(os.path.join(src, "model.safetensors.index.json"))
    assert not os.path.exists(os.path.join(src, "model.safetensors"))
    assert converted(src, tmp_path / "models" / "distil") == 0
    ours = our_logits(str(tmp_path / "models" / "distil"), TOKENS)
    np.testing.assert_allclose(ours, hf_logits(model, TOKENS)[:, :48], atol=1e-4, rtol=0)


@pytest.mark.parametrize("prefix,dtype", [("", "float32"), ("transformer.", "float32"),
                                          ("", "bfloat16"), ("transformer.", "float16")])
def test_prefix_mask_buffers_tied_head_and_half_precision(tmp_path, hf_model, hf_dir,
                                                          prefix, dtype):
    """Older files: names with or without `transformer.`, the causal-mask buffers
    `h.{i}.attn.bias`/`masked_bias`, an explicit lm_head equal to wte, 16-bit weights."""
    from safetensors.torch import save_file
    n = hf_model.config.n_positions
    state = {}
    for name, value in hf_model.transformer.state_dict().items():
        state[prefix + name] = value.to(getattr(torch, dtype)).contiguous()
    for i in range(hf_model.config.n_layer):
        state[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        state[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    state["lm_head.weight"] = state[prefix + "wte.weight"].clone()
    src = tmp_path / "old"
    src.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        shutil.copy(os.path.join(hf_dir, name), src / name)
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    assert converted(src, tmp_path / "out") == 0
    import checkpoint
    import model
    hparams = model.HParams(**dict(CLI_TINY, n_ctx=64))
    read = dict(checkpoint.read_checkpoint(str(tmp_path / "out"), hparams))
    expected = state[prefix + "h.1.attn.c_attn.weight"].float().numpy()
    np.testing.assert_array_equal(read["model/h1/attn/c_attn/w"][0], expected)
    if dtype == "float32":
        ours = our_logits(str(tmp_path / "out"), TOKENS)
        np.testing.assert_allclose(ours, hf_logits(hf_model, TOKENS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", ["hf_formatting", "tokenizer_json"])
def test_gpt2_vocabulary_in_other_files(tmp_path, hf_dir, layout):
    """The Hub's vocab.json as transformers writes it (sorted, indented, not ASCII), a
    merges.txt with no final newline, or only a tokenizer.json: GPT-2's vocabulary all the
    same, written out as OpenAI's files."""
    src = shutil.copytree(hf_dir, tmp_path / "src")
    vocab, merges = read_released_vocabulary()
    os.remove(src / "vocab.json")
    os.remove(src / "merges.txt")
    if layout == "hf_formatting":
        (src / "vocab.json").write_text(json.dumps(vocab, indent=2, sort_keys=True,
                                                   ensure_ascii=False), encoding="utf-8")
        (src / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
            " ".join(pair) for pair in merges), encoding="utf-8")
    else:
        model = {"type": "BPE", "vocab": vocab, "merges": [list(pair) for pair in merges]}
        (src / "tokenizer.json").write_text(json.dumps({"model": model}), encoding="utf-8")
    assert converted(src, tmp_path / "out") == 0
    for name in ("encoder.json", "vocab.bpe"):
        assert (tmp_path / "out" / name).read_bytes() == open(os.path.join(fx.DATA, name),
                                                              "rb").read()


def test_config_round_trip_and_names():
    import hub_format
    import model
    hparams = model.HParams(n_vocab=50257, n_ctx=48, n_embd=24, n_head=3, n_layer=6)
    config = hub_format.config_from_hparams(hparams)
    assert hub_format.hparams_from_config(config, source="c") == hparams
    reference = transformers.GPT2Config(**config)  # transformers reads the same model
    assert (reference.n_positions, reference.n_embd, reference.n_layer, reference.n_head,
            reference.vocab_size) == (48, 24, 6, 3, 50257)
    names = hub_format.hub_names(hparams)
    assert names["h.5.attn.c_proj.weight"] == "model/h5/attn/c_proj/w"
    assert names["h.0.ln_2.bias"] == "model/h0/ln_2/b"
    assert names["wpe.weight"] == "model/wpe"
    assert len(names) == 2 + 12 * 6 + 2
