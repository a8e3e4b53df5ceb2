"""Writes tokenizer parity fixtures with the reference `tokenizers` package.

For each family, tests/fixtures/tokenizer/<family>/ holds
  tokenizer.json          the family's exact pipeline (normalizer, pre-tokenizer, post-processor,
                          decoder, BPE flags, added tokens) around a small BPE vocabulary trained
                          here with `tokenizers` on a generated multilingual corpus
  tokenizer_config.json   bos/eos/pad/unk and added_tokens_decoder (from the real checkpoint's
                          file in ../shared/reference/checkpoints where we have it, ids remapped)
  special_tokens_map.json where the family has one
  cases.json              {"encode": [{"text", "ids", "ids_special", "decode", "decode_skip"}],
                           "decode": [{"ids", "text", "text_skip", "stream"}]}
                          ids:          Tokenizer.encode(text, add_special_tokens=False).ids
                          ids_special:  Tokenizer.encode(text, add_special_tokens=True).ids
                          decode(_skip): Tokenizer.decode(ids_special, skip_special_tokens=F/T)
                          "decode" cases are random id sequences (partial UTF-8, byte-fallback
                          runs, specials); stream is DecodeStream(False).step() per id ("" = None)
tests/fixtures/tokenizer/fuzz_text/*.txt are plain-text seeds for tests/fuzz/fuzz_tokenizer.
Usage: gen_tokenizers.py FIXTURES_DIR
"""
import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.decoders import DecodeStream

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
OUT = os.path.join(ROOT, "tokenizer")
HERE = os.path.dirname(os.path.abspath(__file__))
CKPT = os.path.join(HERE, "..", "..", "..", "shared", "reference", "checkpoints")

# Split regexes exactly as the real tokenizer.json files carry them.
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
             r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def bytelevel(add_prefix_space=False, trim_offsets=False, use_regex=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets,
            "use_regex": use_regex}


def template(bos, bos_id, eos=None, eos_id=None):
    single = [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    st = {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
    if eos is not None:
        single = single + [{"SpecialToken": {"id": eos, "type_id": 0}}]
        pair = pair + [{"SpecialToken": {"id": eos, "type_id": 1}}]
        st[eos] = {"id": eos, "ids": [eos_id], "tokens": [eos]}
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": st}


# ------------------------------------------------------------------------------------------
# Text: training corpus and test strings
# ------------------------------------------------------------------------------------------

EN = ("the of and to in is was for that with as on by he she it at from his her an were are which "
      "this be or has had not but they been their one all would there we when will more can about "
      "model image token vision language audio encoder decoder Tokenizer Hello World don't I'm "
      "we'll they've she's you'd it's THE Quick Brown Fox jumps over lazy dog's tail").split()
ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等"
JA = "こんにちはありがとうございますカタカナひらがな日本語東京です、。「」ー"
KO = "안녕하세요한국어감사합니다서울대학교문자"
AR = ["مرحبا", "بالعالم", "اللغة", "العربية", "كتاب", "مدرسة", "شكرا", "جدا", "السلام", "عليكم", "٠١٢٣٤٥٦٧٨٩"]
HI = ["नमस्ते", "दुनिया", "हिन्दी", "भाषा", "किताब", "विद्यालय", "धन्यवाद", "क्षत्रिय", "श्री", "०१२३४५६७८९"]
RU = ["привет", "мир", "Россия", "язык", "книга", "школа", "спасибо", "Ёлка"]
EL = ["γειά", "σου", "κόσμε", "Ελληνικά", "ΑΘΗΝΑ"]
TH = ["สวัสดี", "ภาษาไทย", "ขอบคุณ"]
EMOJI = ["😀", "👍", "👍🏽", "❤️", "🇺🇸", "🇯🇵", "👨‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "🤖", "🔥", "✨", "👩‍❤️‍💋‍👨", "🫠",
         "1️⃣", "☺︎"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "\u0301", "o\u0302\u0323", "\u1100\u1161\u11a8", "A\u030a",
             "\u212b", "\ufb01", "\u00c5", "\u0065\u0301\u0301", "\u0915\u094d\u0937", "Z\u0351\u0352\u0353"]
CODE = ["def f(x):\n    return x + 1\n", "int main(void) { return 0; }", "for (i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "{\"key\": [1, 2.5e-3, null, true]}", "x = y ** 2 // 3 % 4", "if a != b && c >= d || !e:", "#include <stdio.h>",
        "SELECT * FROM users WHERE id = 42;", "    \t  ", "<div class=\"x\">&amp;</div>", "http://example.com/a/b?c=d&e=f",
        "path/to/file_name.txt", "C:\\Windows\\System32", "$HOME/.config", "@decorator", "a->b->c", "i++; j--;"]
ODD = ["\ufffd", "\ufffe", "\uffff", "\ue000", "\u200b", "\u200d", "\u200e", "\u202e", "\ufeff", "\u00a0", "\u3000",
       "\u2028", "\u2029", "\u0085", "\x01", "\x7f", "\t", "\r", "\r\n", "\x0b", "\x0c", "\U0001d400",
       "\U0010fffd", "\U0001f9ff", "<0x41>", "<0xZZ>", "< s>", "<|im_start", "[INST", "<|", "|>", "\u180e", "\u2009",
       "\u1680", "\u000a\u000a\u000a"]


def word(rng):
    r = rng.random()
    if r < 0.40:
        w = rng.choice(EN)
    elif r < 0.50:
        w = "".join(rng.choice(ZH) for _ in range(rng.randint(1, 4)))
    elif r < 0.55:
        w = "".join(rng.choice(JA) for _ in range(rng.randint(1, 5)))
    elif r < 0.59:
        w = "".join(rng.choice(KO) for _ in range(rng.randint(1, 4)))
    elif r < 0.65:
        w = rng.choice(AR)
    elif r < 0.71:
        w = rng.choice(HI)
    elif r < 0.76:
        w = rng.choice(RU)
    elif r < 0.78:
        w = rng.choice(EL)
    elif r < 0.80:
        w = rng.choice(TH)
    elif r < 0.85:
        w = str(rng.randint(0, 10 ** rng.randint(1, 8)))
    elif r < 0.88:
        w = rng.choice(EMOJI)
    elif r < 0.90:
        w = rng.choice(COMBINING)
    else:
        w = rng.choice([",", ".", "!", "?", ";", ":", "(", ")", "-", "'", '"', "...", "—", "«", "»", "、", "。"])
    return w


def sentence(rng, n):
    out = []
    for _ in range(n):
        out.append(word(rng))
        out.append(rng.choice([" ", " ", " ", " ", "", "\n", "  "]))
    return "".join(out).strip(" ")


def corpus(seed, size):
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        s = sentence(rng, rng.randint(3, 30))
        if rng.random() < 0.1:
            s += rng.choice(CODE)
        parts.append(s)
        total += len(s)
    return parts


def test_strings(seed, specials, n):
    """Test strings; no NUL (cases.json strings are read as C strings; the C test covers NUL)."""
    rng = random.Random(seed)
    out = ["", " ", "  ", "a", "\n", "Hello world", " Hello", "Hello ", "hello\n\nworld", "don't I'm we'll",
           "1234567890123456789", " " * 40, "\t" * 7, "\n" * 9 + "x", "  \n  \n", "x" + " " * 17 + "y",
           "9" * 100, "ab" * 150, "日本語のテキスト", "中文文本测试", "مرحبا بالعالم", "नमस्ते दुनिया",
           "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "e\u0301 vs \u00e9", "\u212b\u2126\ufb01", "ﾃｽﾄ", "ＡＢＣ１２３"]
    for sp in specials[:8]:
        out += [sp, sp + sp, "a" + sp + "b", " " + sp + " ", sp + " hello", "hi " + sp, sp + "\n" + sp]
    gens = ["sent", "sent", "sent", "code", "ws", "digits", "emoji", "odd", "special", "mixed", "script", "long"]
    while len(out) < n:
        g = rng.choice(gens)
        if g == "sent":
            s = sentence(rng, rng.randint(1, 14))
        elif g == "code":
            s = rng.choice(CODE) + rng.choice(["", " ", "\n"]) + rng.choice(CODE)
        elif g == "ws":
            s = "".join(rng.choice([" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "x", "ab", "\r"])
                        for _ in range(rng.randint(1, 40)))
        elif g == "digits":
            s = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 60)))
            s = rng.choice(["", "v", " ", "$", "x="]) + s + rng.choice(["", ".5", "%", " km", "th"])
        elif g == "emoji":
            s = "".join(rng.choice(EMOJI + [" ", "a"]) for _ in range(rng.randint(1, 8)))
        elif g == "odd":
            s = "".join(rng.choice(ODD + ["a", " ", "é"]) for _ in range(rng.randint(1, 8)))
        elif g == "special" and specials:
            parts = []
            for _ in range(rng.randint(1, 5)):
                parts.append(sentence(rng, rng.randint(0, 4)))
                parts.append(rng.choice(["", " ", "\n"]) + rng.choice(specials[:40]) + rng.choice(["", " ", "\n"]))
            s = "".join(parts)
        elif g == "mixed":
            s = "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x370, 0x52f),
                                        rng.randint(0x600, 0x6ff), rng.randint(0x900, 0x97f), rng.randint(0x3040, 0x30ff),
                                        rng.randint(0x4e00, 0x4fff), rng.randint(0xac00, 0xac80), rng.randint(0x1f300, 0x1f64f),
                                        rng.randint(0x300, 0x36f), rng.randint(0x2000, 0x206f)]))
                        for _ in range(rng.randint(1, 24)))
        elif g == "script":
            pool = rng.choice([AR, HI, RU, EL, TH, [ZH], [JA], [KO]])
            if len(pool) == 1:
                s = "".join(rng.choice(pool[0]) for _ in range(rng.randint(1, 30)))
            else:
                s = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        else:
            s = sentence(rng, rng.randint(40, 120))
        out.append(s)
    return out[:n]


# ------------------------------------------------------------------------------------------
# Families
# ------------------------------------------------------------------------------------------

def read_ckpt(rel):
    path = os.path.join(CKPT, rel)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def flags(content, special=True, lstrip=False, rstrip=False, normalized=False, single_word=False):
    return {"content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def qwen2_added():
    cfg = read_ckpt("Qwen--Qwen2-VL-2B/tokenizer_config.json")
    toks = []
    for k in sorted(cfg["added_tokens_decoder"], key=int):
        d = cfg["added_tokens_decoder"][k]
        toks.append(flags(d["content"], d["special"], d["lstrip"], d["rstrip"], d["normalized"], d["single_word"]))
    return toks, cfg


QWEN25_EXTRA = [  # Qwen2.5 adds these after <|video_pad|> (tool / FIM tokens are not special)
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False)]
MINICPMO_EXTRA = ["<image>", "</image>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<point>",
                  "</point>", "<slice>", "</slice>", "<image_id>", "</image_id>", "<unit>", "</unit>",
                  "<|audio_start|>", "<|audio|>", "<|audio_end|>", "<|spk_bos|>", "<|spk|>", "<|spk_eos|>",
                  "<|tts_bos|>", "<|tts_eos|>", "<|listen|>", "<|speak|>", "<|interrupt|>", "<|vad_start|>",
                  "<|vad_end|>"]


def llama3_added():
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
             "<|eot_id|>", "<|python_tag|>"]
    names += ["<|reserved_special_token_%d|>" % i for i in range(2, 247)]
    names += ["<|image|>"]
    return [flags(n) for n in names]


def tekken_added():
    cfg = read_ckpt("mistralai--Mistral-Small-3.1-24B-Instruct-2503/tokenizer_config.json")
    if cfg is None:
        names = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"] + ["<SPECIAL_%d>" % i for i in range(5, 1000)]
    else:
        names = [cfg["added_tokens_decoder"][k]["content"] for k in sorted(cfg["added_tokens_decoder"], key=int)]
    return [flags(n) for n in names]


FAMILIES = {
    # Qwen2-VL: NFC, Qwen2 split regex, byte-level BPE, no BOS.
    "qwen2": dict(
        byte_level=True, seed=11,
        normalizer={"type": "NFC"},
        pre_tokenizer={"type": "Sequence", "pretokenizers": [split(QWEN2_RE), bytelevel()]},
        post_processor=bytelevel(), decoder=bytelevel(),
        model_flags=dict(ignore_merges=False), merges_form="string"),
    # Qwen2.5 as used by MiniCPM-o 2.6: the Qwen2 pipeline, Qwen2.5 + MiniCPM-o added tokens.
    "qwen25_minicpmo": dict(
        byte_level=True, seed=12,
        normalizer={"type": "NFC"},
        pre_tokenizer={"type": "Sequence", "pretokenizers": [split(QWEN2_RE), bytelevel()]},
        post_processor=bytelevel(), decoder=bytelevel(),
        model_flags=dict(ignore_merges=False), merges_form="pairs"),
    # Llama 3.2 Vision (MLlama): no normalizer, Llama-3 regex, ignore_merges, BOS template.
    "llama3": dict(
        byte_level=True, seed=13, normalizer=None,
        pre_tokenizer={"type": "Sequence", "pretokenizers": [split(LLAMA3_RE), bytelevel(trim_offsets=True)]},
        post_processor={"type": "Sequence", "processors": [
            bytelevel(add_prefix_space=True, use_regex=True), "TEMPLATE"]},
        decoder=bytelevel(add_prefix_space=True, trim_offsets=True, use_regex=True),
        model_flags=dict(ignore_merges=True), merges_form="pairs", bos="<|begin_of_text|>"),
    # Mistral-Small-3.1 (Mistral3) Tekken: 1000 control tokens first, Tekken regex, BOS <s>.
    "tekken": dict(
        byte_level=True, seed=14, normalizer=None,
        pre_tokenizer={"type": "Sequence", "pretokenizers": [split(TEKKEN_RE), bytelevel(trim_offsets=True)]},
        post_processor="TEMPLATE",
        decoder=bytelevel(add_prefix_space=True, trim_offsets=True, use_regex=True),
        model_flags=dict(ignore_merges=True), merges_form="pairs", bos="<s>"),
    # LLaVA-Next (Mistral-7B / Llama-2 SentencePiece BPE, legacy conversion): Prepend + Replace
    # normalizer, no pre-tokenizer, byte fallback, fuse_unk, Replace/ByteFallback/Fuse/Strip decoder.
    "llama_spm": dict(
        byte_level=False, seed=15,
        normalizer={"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        pre_tokenizer=None, post_processor="TEMPLATE",
        decoder={"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        model_flags=dict(byte_fallback=True, fuse_unk=True, unk_token="<unk>"), merges_form="string", bos="<s>"),
    # The same vocabulary style in the non-legacy conversion: Metaspace(prepend_scheme "first").
    "llama_spm_metaspace": dict(
        byte_level=False, seed=16, normalizer=None,
        pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
        post_processor="TEMPLATE_EOS",
        decoder={"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                       "split": False}, {"type": "Fuse"}]},
        model_flags=dict(byte_fallback=True, fuse_unk=True, unk_token="<unk>"), merges_form="pairs", bos="<s>"),
    # Added-token flags (lstrip / rstrip / single_word / normalized) on the Qwen2 pipeline plus a
    # NFKC + Lowercase normalizer and a Digits + Split(Removed) pre-tokenizer: exercises the
    # AddedVocabulary and component paths no shipped family uses.
    "added_flags": dict(
        byte_level=True, seed=17,
        normalizer={"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
        pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False},
            {"type": "Split", "pattern": {"String": "--"}, "behavior": "Removed", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"\s*[.!?]"}, "behavior": "MergedWithPrevious", "invert": False},
            bytelevel(add_prefix_space=True, use_regex=True)]},
        post_processor="TEMPLATE_EOS", decoder=bytelevel(),
        model_flags=dict(ignore_merges=False), merges_form="pairs", bos="<s>", n_cases=600),
}


def family_added(name):
    if name in ("qwen2", "qwen25_minicpmo"):
        toks, _ = qwen2_added()
        if name == "qwen25_minicpmo":
            toks += [flags(c, special=s) for c, s in QWEN25_EXTRA]
            toks += [flags(c) for c in MINICPMO_EXTRA]
        return toks
    if name == "llama3":
        return llama3_added()
    if name == "tekken":
        return tekken_added()
    if name in ("llama_spm", "llama_spm_metaspace"):
        toks = [flags("<unk>"), flags("<s>"), flags("</s>")]
        if name == "llama_spm":
            toks.append(flags("<image>"))  # llava-next adds <image> after the SentencePiece vocab
        return toks
    if name == "added_flags":
        return [flags("<s>"), flags("</s>"), flags("<L>", lstrip=True), flags("<R>", rstrip=True),
                flags("<LR>", lstrip=True, rstrip=True), flags("<W>", single_word=True),
                flags("Ünïcode", special=False, normalized=True), flags("mask", special=False, single_word=True),
                flags("<n>", special=True, normalized=True), flags("<plain>", special=False)]
    raise KeyError(name)


def train(name, fam, added):
    n_front = len(added) if name == "tekken" else 0
    if fam["byte_level"]:
        model = models.BPE()
        tok = Tokenizer(model)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        special = [a["content"] for a in added[:n_front]]
        trainer = trainers.BpeTrainer(vocab_size=4000 + n_front, special_tokens=special, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
        special = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=special, show_progress=False,
                                      limit_alphabet=600)
    tok.train_from_iterator(corpus(fam["seed"], 1_200_000), trainer)
    return json.loads(tok.to_str())


def build(name, fam):
    added = family_added(name)
    d = train(name, fam, added)
    vocab = d["model"]["vocab"]
    n = max(vocab.values()) + 1
    # Added tokens: tekken's sit at 0..999 (trained as specials); SentencePiece specials at 0..2;
    # everyone else's follow the vocabulary.
    out_added = []
    for i, a in enumerate(added):
        if a["content"] in vocab and (name == "tekken" or a["content"] in ("<unk>", "<s>", "</s>")):
            tid = vocab[a["content"]]
        else:
            tid = n
            n += 1
        out_added.append(dict(id=tid, **a))
    d["added_tokens"] = out_added
    d["normalizer"] = fam["normalizer"]
    d["pre_tokenizer"] = fam["pre_tokenizer"]
    ids = {a["content"]: a["id"] for a in out_added}

    def tpl(p):
        if p == "TEMPLATE":
            return template(fam["bos"], ids[fam["bos"]])
        if p == "TEMPLATE_EOS":
            eos = "</s>"
            return template(fam["bos"], ids[fam["bos"]], eos, ids[eos])
        if isinstance(p, dict) and p.get("type") == "Sequence":
            return {"type": "Sequence", "processors": [tpl(x) for x in p["processors"]]}
        return p

    d["post_processor"] = tpl(fam["post_processor"])
    d["decoder"] = fam["decoder"]
    m = d["model"]
    m.update(dict(dropout=None, unk_token=None, continuing_subword_prefix=None, end_of_word_suffix=None,
                  fuse_unk=False, byte_fallback=False, ignore_merges=False))
    m.update(fam["model_flags"])
    if fam["merges_form"] == "string":
        m["merges"] = [" ".join(p) for p in m["merges"]]
    return d


def tokenizer_config(name, d):
    ids = {a["id"]: a for a in d["added_tokens"]}
    dec = {str(i): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
           for i, a in sorted(ids.items())}
    if name in ("qwen2", "qwen25_minicpmo"):
        _, real = qwen2_added()
        cfg = {k: v for k, v in real.items() if k not in ("added_tokens_decoder", "chat_template")}
        cfg["added_tokens_decoder"] = dec
        if name == "qwen25_minicpmo":
            cfg["pad_token"] = "<|endoftext|>"
            cfg["unk_token"] = "<unk>"  # MiniCPM-o names <unk>, which this vocabulary lacks
        return cfg, None
    if name == "llama3":
        cfg = {"added_tokens_decoder": dec, "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True,
               "eos_token": "<|eot_id|>", "model_input_names": ["input_ids", "attention_mask"],
               "model_max_length": 131072, "pad_token": "<|finetune_right_pad_id|>",
               "tokenizer_class": "PreTrainedTokenizerFast"}
        return cfg, None
    if name == "tekken":
        real = read_ckpt("mistralai--Mistral-Small-3.1-24B-Instruct-2503/tokenizer_config.json") or {}
        cfg = {k: real.get(k) for k in ("add_bos_token", "add_eos_token", "bos_token", "eos_token", "pad_token",
                                         "unk_token", "legacy", "tokenizer_class", "clean_up_tokenization_spaces")}
        cfg["added_tokens_decoder"] = {k: v for k, v in dec.items() if int(k) < 20}
        stm = {"bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False},
               "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False},
               "pad_token": {"content": "<pad>", "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False},
               "unk_token": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False}}
        return cfg, stm
    if name in ("llama_spm", "llama_spm_metaspace"):
        cfg = {"add_bos_token": True, "add_eos_token": name == "llama_spm_metaspace", "added_tokens_decoder": dec,
               "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>",
               "legacy": name == "llama_spm", "tokenizer_class": "LlamaTokenizer",
               "clean_up_tokenization_spaces": False}
        stm = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}
        if name == "llama_spm":
            stm["additional_special_tokens"] = ["<image>"]
        return cfg, stm
    cfg = {"added_tokens_decoder": dec, "bos_token": "<s>", "eos_token": {"content": "</s>", "__type": "AddedToken"}}
    return cfg, {"pad_token": "<plain>"}


def stream(tok, ids):
    """Chunks of DecodeStream(False).step per id; None where the reference raises (its prefix
    changed under a later token), which the C side does not compare."""
    ds = DecodeStream(skip_special_tokens=False)
    out = []
    try:
        for i in ids:
            c = ds.step(tok, i)
            out.append(c if c is not None else "")
    except Exception:
        return None
    return out


def cases(name, fam, tok, d):
    specials = [a["content"] for a in d["added_tokens"]]
    if name == "added_flags":
        specials = specials + ["ÜNÏCODE", "ünïcode", "Mask", "<N>"]
    texts = test_strings(fam["seed"] + 100, specials, fam.get("n_cases", 2000))
    enc = []
    for t in texts:
        a = tok.encode(t, add_special_tokens=False).ids
        b = tok.encode(t, add_special_tokens=True).ids
        enc.append({"text": t, "ids": a, "ids_special": b,
                    "decode": tok.decode(b, skip_special_tokens=False),
                    "decode_skip": tok.decode(b, skip_special_tokens=True)})
    rng = random.Random(fam["seed"] + 200)
    vs = tok.get_vocab_size(with_added_tokens=True)
    byte_ids = [tok.token_to_id("<0x%02X>" % b) for b in range(256)]
    byte_ids = [i for i in byte_ids if i is not None]
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
                    "text_skip": tok.decode(ids, skip_special_tokens=True), "stream": stream(tok, ids)})
    return {"family": name, "encode": enc, "decode": dec}


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def fuzz_seeds():
    """Plain-text seeds for tests/fuzz/fuzz_tokenizer (the encode path)."""
    out = os.path.join(OUT, "fuzz_text")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(99)
    texts = test_strings(98, ["<|im_start|>", "<s>", "</s>", "<L>", "<R>", "<W>", "mask"], 200)
    for i, t in enumerate([texts[j] for j in sorted(rng.sample(range(27, 200), 10))] + [CODE[0], " " * 300]):
        with open(os.path.join(out, "text_%02d.txt" % i), "w", encoding="utf-8") as f:
            f.write(t)


def main():
    fuzz_seeds()
    only = sys.argv[2:] if len(sys.argv) > 2 else list(FAMILIES)
    for name in only:
        fam = FAMILIES[name]
        d = build(name, fam)
        tok = Tokenizer.from_str(json.dumps(d))
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        dump(os.path.join(out, "tokenizer.json"), d)
        cfg, stm = tokenizer_config(name, d)
        with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)
            f.write("\n")
        if stm is not None:
            with open(os.path.join(out, "special_tokens_map.json"), "w", encoding="utf-8") as f:
                json.dump(stm, f, ensure_ascii=False, indent=2)
                f.write("\n")
        c = cases(name, fam, tok, d)
        dump(os.path.join(out, "cases.json"), c)
        print("%s: vocab %d, %d encode cases, %d decode cases" % (
            name, tok.get_vocab_size(True), len(c["encode"]), len(c["decode"])))


if __name__ == "__main__":
    main()
