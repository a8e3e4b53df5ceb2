"""Tokenizer parity fixtures on real checkpoint vocabularies that Python packages ship.

Each vocabulary below is converted to a Hugging Face tokenizer.json the way transformers builds
it for the checkpoints of that family, into a cache outside the tracked tree:
  tests/fixtures/real_vocab/.cache/<name>/tokenizer.json (+ tokenizer_config.json)
The converted tokenizer is first checked against the package's own tokenizer on a few hundred
strings without special tokens (agreement printed; the reference is `tokenizers` either way).
Then tests/fixtures/real_vocab/<name>/cases.json gets the same case format as
gen_tokenizers.py (2,000 encode cases with and without special tokens, their decodes, 200
random-id decode cases with DecodeStream chunks) plus "tokenizer_sha256", the sha256 of the
converted tokenizer.json, which tests/test_tokenizer_real.c checks before comparing.

  mistral_tekken_240911  Tekken 131k (Pixtral, Mistral-Small-3.1): mistral_common's
                         tekken_240911.json through transformers' convert_tekken_tokenizer
  mistral_spm_v1         SentencePiece 32k of Mistral-7B v0.1/v0.2 (the base of
                         llava-v1.6-mistral-7b): mistral_common's tokenizer.model.v1 through
                         transformers' LlamaConverter (legacy, <s> template), as the hub's was made
  llama3                 Llama 3 / 3.2-Vision 128k tiktoken ranks from llama_models, through
                         transformers' TikTokenConverter with the Llama 3 specials and the
                         <|begin_of_text|> template
  qwen2                  Qwen 151k tiktoken ranks (qwen.tiktoken, shipped by dashscope; Qwen2
                         kept Qwen's ranks) through TikTokenConverter's merge extraction into
                         transformers' Qwen2Tokenizer pipeline, with Qwen2-VL's added tokens
                         (ids from ../shared/reference/checkpoints/Qwen--Qwen2-VL-2B)

The converted Tekken, Llama 3 and Qwen tokenizers agree with their packages on every check
string. Mistral SentencePiece does not where a string has a run of spaces (or starts with one):
the hub-style tokenizer.json has no pre-tokenizer and merges "▁▁", where sentencepiece splits
"▁" + "▁word"; the fixture follows `tokenizers`, as for the hub checkpoint.

mistral_common, llama_models and dashscope are pinned here and installed without their
dependencies; what they import is in requirements.txt.
Usage: gen_real_vocab.py FIXTURES_DIR [name ...]
"""
import hashlib
import importlib.util
import json
from pathlib import Path
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Installed without dependencies: only their vocabulary files and tokenizer modules are used, and
# mistral-common's numpy<2.4 bound would move the reference stack's numpy.
NODEPS = ["mistral-common==1.13.1", "llama-models==0.3.0", "dashscope==2.0.2"]


def ensure_nodeps():
    if not all(importlib.util.find_spec(m) for m in ("mistral_common", "llama_models", "dashscope")):
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps"] + NODEPS)


ensure_nodeps()

import gen_tokenizers as gt  # noqa: E402  (test strings, DecodeStream chunks, dump)
from tokenizers import AddedToken, Tokenizer, processors  # noqa: E402

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
OUT = os.path.join(ROOT, "real_vocab")
CACHE = os.environ.get("TSR_REAL_VOCAB") or os.path.join(OUT, ".cache")


def pkg_file(pkg, *rel):
    spec = importlib.util.find_spec(pkg)
    return os.path.join(os.path.dirname(spec.origin), *rel)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save(tok, out, **specials):
    """Writes tokenizer.json + tokenizer_config.json through transformers' fast tokenizer."""
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    fast.save_pretrained(out)


# ------------------------------------------------------------------------------------------
# Conversions (each returns the package's own encode(text) -> ids, for the agreement check)
# ------------------------------------------------------------------------------------------

def tekken(out, fname):
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer
    src = pkg_file("mistral_common", "data", fname)
    fast = convert_tekken_tokenizer(src)
    fast.save_pretrained(out)
    ref = Tekkenizer.from_file(src)
    return src, lambda s: ref.encode(s, bos=False, eos=False)


def mistral_spm(out, fname):
    import sentencepiece as spm
    from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import LlamaConverter, SentencePieceExtractor
    src = pkg_file("mistral_common", "data", fname)
    sp = spm.SentencePieceProcessor(model_file=src)

    class Slow:  # the attributes LlamaConverter reads from a slow LlamaTokenizer(legacy=True)
        vocab_file = src
        legacy = True
        add_prefix_space = True

        @staticmethod
        def convert_ids_to_tokens(i):
            return sp.id_to_piece(i)

    class Converter(LlamaConverter):
        # transformers 5 no longer runs SpmConverter.tokenizer() (its extractor call changed);
        # the BPE is built here from the same extraction, as LlamaTokenizer.from_pretrained does.
        def tokenizer(self, proto):
            kw = SentencePieceExtractor(src).extract(BPE)
            tok = Tokenizer(BPE(kw["vocab"], kw["merges"], unk_token=proto.trainer_spec.unk_piece,
                                fuse_unk=True, byte_fallback=True, dropout=None))
            tok.add_special_tokens([AddedToken(sp.id_to_piece(i), normalized=False, special=True)
                                    for i in range(3)])
            return tok

    tok = Converter(Slow()).converted()
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    save(tok, out, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    ref = SentencePieceTokenizer(src)
    return src, lambda s: ref.encode(s, bos=False, eos=False)


def llama3(out):
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter
    src = pkg_file("llama_models", "llama3", "tokenizer.model")
    ref = MetaTokenizer(Path(src))
    specials = sorted(ref.special_tokens, key=ref.special_tokens.get)
    tok = TikTokenConverter(vocab_file=src, pattern=ref.pat_str, extra_special_tokens=specials).converted()
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=bos + ":0 $A:0", pair=bos + ":0 $A:0 " + bos + ":1 $B:1",
                                      special_tokens=[(bos, ref.special_tokens[bos])])])
    save(tok, out, bos_token=bos, eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>")
    return src, lambda s: ref.encode(s, bos=False, eos=False)


def qwen2(out):
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter
    src = pkg_file("dashscope", "resources", "qwen.tiktoken")
    # dashscope/__init__ pulls in its network client; load only its tokenizers subpackage.
    d = pkg_file("dashscope", "tokenizers")
    spec = importlib.util.spec_from_file_location("_ds_tok", os.path.join(d, "tokenizer_base.py"))
    pkg = importlib.util.module_from_spec(importlib.util.spec_from_loader("_ds_tok", loader=None,
                                                                            is_package=True))
    pkg.__path__ = [d]
    sys.modules["_ds_tok"] = pkg
    qt = importlib.import_module("_ds_tok.qwen_tokenizer")
    ref = qt.QwenTokenizer(src)
    vocab, merges = TikTokenConverter(vocab_file=src).extract_vocab_merges_from_model(src)
    fast = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|endoftext|>",
                          pad_token="<|endoftext|>")
    tok = fast.backend_tokenizer
    cfg = json.load(open(os.path.join(gt.CKPT, "Qwen--Qwen2-VL-2B", "tokenizer_config.json")))
    added = sorted(cfg["added_tokens_decoder"].items(), key=lambda kv: int(kv[0]))
    tok.add_special_tokens([AddedToken(v["content"], normalized=False, special=True) for _, v in added])
    for k, v in added:
        assert tok.token_to_id(v["content"]) == int(k), v
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    save(tok, out, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    return src, lambda s: ref.encode(s)


VOCABS = {
    "mistral_tekken_240911": (lambda o: tekken(o, "tekken_240911.json"), 11),
    "mistral_spm_v1": (lambda o: mistral_spm(o, "tokenizer.model.v1"), 12),
    "llama3": (llama3, 13),
    "qwen2": (qwen2, 14),
}


def agreement(name, tok, ref_encode, seed):
    """Converted tokenizer vs the package's tokenizer on strings without special tokens."""
    texts = gt.test_strings(seed, [], 400)
    bad = []
    for t in texts:
        a = tok.encode(t, add_special_tokens=False).ids
        b = list(ref_encode(t))
        if a != b:
            bad.append((t, a, b))
    print("%s: converted tokenizer.json vs package tokenizer: %d/%d strings agree" % (
        name, len(texts) - len(bad), len(texts)))
    odd = [x for x in bad if "  " not in x[0]]
    if bad:
        print("  %d of the differing strings have no run of two spaces" % len(odd))
    for t, a, b in (odd or bad)[:5]:
        print("  differs: %r\n    hf:  %s\n    pkg: %s" % (t, a[:24], b[:24]))
    return len(texts) - len(bad), len(texts)


def texts_for(seed, specials, n=2000, long_max=200, n_long=16):
    """gen_tokenizers' strings, keeping only the first n_long longer than long_max characters
    (the fixture stays under 1 MiB)."""
    out, n_l = [], 0
    for t in gt.test_strings(seed, specials, 2 * n):
        if len(t) > long_max:
            if n_l >= n_long:
                continue
            n_l += 1
        out.append(t)
        if len(out) == n:
            break
    return out


def cases(name, seed, tok, d):
    """Same format as gen_tokenizers.cases()."""
    specials = [a["content"] for a in d["added_tokens"]]
    enc = []
    for t in texts_for(seed * 1000 + 100, specials):
        a = tok.encode(t, add_special_tokens=False).ids
        b = tok.encode(t, add_special_tokens=True).ids
        enc.append({"text": t, "ids": a, "ids_special": b,
                    "decode": tok.decode(b, skip_special_tokens=False),
                    "decode_skip": tok.decode(b, skip_special_tokens=True)})
    rng = random.Random(seed * 1000 + 200)
    vs = tok.get_vocab_size(with_added_tokens=True)
    byte_ids = [i for i in (tok.token_to_id("<0x%02X>" % b) for b in range(256)) if i is not None]
    special_ids = [a["id"] for a in d["added_tokens"]][:50]
    dec = []
    for k in range(200):
        ids = []
        for _ in range(rng.randint(0, 24)):
            r = rng.random()
            if r < 0.15 and byte_ids:
                ids.append(rng.choice(byte_ids))
            elif r < 0.25:
                ids.append(rng.choice(special_ids))
            else:
                ids.append(rng.randrange(vs))
        if k < 40 and enc[k + 30]["ids"]:
            ids = enc[k + 30]["ids_special"]
        ids = [i for i in ids if "\x00" not in tok.decode([i])]  # C strings in the test
        dec.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                    "text_skip": tok.decode(ids, skip_special_tokens=True), "stream": gt.stream(tok, ids)})
    return {"family": name, "encode": enc, "decode": dec}


def main():
    only = sys.argv[2:] if len(sys.argv) > 2 else list(VOCABS)
    for name in only:
        conv, seed = VOCABS[name]
        cache = os.path.join(CACHE, name)
        os.makedirs(cache, exist_ok=True)
        src, ref_encode = conv(cache)
        tj = os.path.join(cache, "tokenizer.json")
        tok = Tokenizer.from_file(tj)
        with open(tj, encoding="utf-8") as f:
            d = json.load(f)
        agree, total = agreement(name, tok, ref_encode, seed)
        c = cases(name, seed, tok, d)
        c["tokenizer_sha256"] = sha256(tj)
        c["source"] = {"file": os.path.basename(src), "sha256": sha256(src),
                       "package_agreement": [agree, total]}
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        gt.dump(os.path.join(out, "cases.json"), c)
        print("%s: vocab %d, %d encode cases, %d decode cases, tokenizer.json sha256 %s" % (
            name, tok.get_vocab_size(True), len(c["encode"]), len(c["decode"]), c["tokenizer_sha256"]))


if __name__ == "__main__":
    main()
