#!/usr/bin/env python3
"""End-to-end processor fixtures: tests/fixtures/pipeline/.

Usage: MINICPMO_SRC=DIR tools/refgen/refgen.sh pipeline
       (or: .venv/bin/python gen_pipeline.py [FIXTURES_DIR])

The whole processor as a user calls it, per family: a model directory (config.json,
preprocessor_config.json / processor_config.json, tokenizer files), media files, and the
outputs of transformers for chat cases and raw-prompt cases.

pipeline/media/                 images (PNG, every Pillow mode the decoders meet) and
                                MiniCPM-o audio (16 kHz 16-bit mono WAV), all seeded
pipeline/<family>/model/        config.json with the model_type and the fields the processors
                                read; the released checkpoint's preprocessor / processor
                                config (../shared/reference/checkpoints where present, else
                                the values of the hub files as the family generators give them),
                                with the tile / slice resolution of LLaVA-NeXT, MLlama and
                                MiniCPM-o scaled down so the fixtures stay small; the family's
                                fixture tokenizer (tests/fixtures/tokenizer/<tok>). No chat
                                template: templates are official text, read at test time from
                                $TSR_SHARED or the git-ignored cache tests/fixtures/chat/fetched.
pipeline/<family>/cases.json    {"family", "model_type", "template": {revision, base, path,
                                 extract} (as in tests/fixtures/chat/<family>--<rev>.json) or
                                 null, "cases": [...]}; a case is
                                  {"name", "kind": "chat", "messages": OpenAI-style messages
                                   (image parts name the media file in image_url.url),
                                   "media": [{"kind": "image"|"audio", "file"}] in prompt order,
                                   "outputs", "input_ids", "cli"}
                                  {"name", "kind": "raw", "prompt", "add_special_tokens",
                                   "media", "outputs", "input_ids", "cli"}
                                 "cli": run it through `tessera preprocess` too.
pipeline/<family>/cases/<name>.safetensors   every tensor transformers returned, as returned
                                (return_tensors="np"), except MiniCPM-o (nested lists, see
                                minicpmo_tensors)

Chat cases follow ProcessorMixin.apply_chat_template(messages, tokenize=True,
return_dict=True, add_generation_prompt=True) of transformers 5: the template is rendered
with the tokenizer's special tokens, images named in the messages are opened with
load_image (EXIF transpose, then convert("RGB"), which drops alpha), and the processor is
called on the prompt with add_special_tokens=False only when the prompt starts with the
tokenizer's bos_token (else the processor's default, True). MiniCPM-o has no processor
template: its cases follow model.chat() (content flattened to one string per message, the
TTS template when audio is present, audio of one message merged as audio_parts says,
chunk_input=True). Cases whose rendering depends on today's date (strftime_now) are refused
here so the fixtures do not age.

Raw cases call processor(text=prompt, images=[PIL.Image.open(f) ...]) (alpha composited by
the image processor as it does for PIL input).
"""
import contextlib
import copy
import importlib
import io
import json
import math
import os
import shutil
import sys
import types

import numpy as np
import soundfile as sf
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import AutoTokenizer, WhisperFeatureExtractor
from transformers.processing_utils import ProcessorMixin
from transformers.image_utils import load_image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "pipeline")
MEDIA = os.path.join(OUT, "media")
CKPT = os.path.join(ROOT, "..", "shared", "reference", "checkpoints")

import gen_chat  # noqa: E402  (template sources, extraction, pinned strftime_now)
from transformers.utils import chat_template_utils as ctu  # noqa: E402

# The processors check their sub-processors against torchvision-backed classes and
# processing_pixtral imports a helper from the torchvision module; the reference is the PIL
# backend (as in gen_proc_a.py), so both checks are bypassed without touching any number.
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
from transformers.models.pixtral import image_processing_pil_pixtral as pixtral_pil  # noqa: E402
_tv = types.ModuleType("transformers.models.pixtral.image_processing_pixtral")
_tv.get_resize_output_image_size = pixtral_pil.get_resize_output_image_size
sys.modules[_tv.__name__] = _tv
from transformers.models.pixtral.processing_pixtral import PixtralProcessor  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil  # noqa: E402
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor  # noqa: E402
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor  # noqa: E402
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil  # noqa: E402
from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor  # noqa: E402
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil  # noqa: E402
from transformers.models.mllama.processing_mllama import MllamaProcessor  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def ckpt_json(model, name):
    with open(os.path.join(CKPT, model, name)) as f:
        return json.load(f)


def pick(d, keys):
    return {k: d[k] for k in keys if k in d}


# ------------------------------------------------------------------------------------------
# Media

def make_image(w, h, seed, mode, smooth=False):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
    r = 128 + 100 * np.sin(2 * math.pi * (1.3 * u + 0.7 * v) + seed)
    g = 255 * (0.1 + 0.8 * u * (1 - 0.5 * v))
    b = 128 + 110 * np.cos(2 * math.pi * (1.9 * u * v + 0.4 * v) + seed)
    a = np.stack([r, g, b], -1)
    if not smooth:
        a = a + rng.normal(0, 14, (h, w, 3))
        a[(xx > w * 0.6) & (yy < h * 0.4)] = [250, 10, 40]
    rgb = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    alpha = 255 * (0.1 + 0.9 * u * v) + (0 if smooth else rng.normal(0, 25, (h, w)))
    alpha = np.clip(np.rint(alpha), 0, 255).astype(np.uint8)
    if mode == "RGB":
        return img
    if mode == "L":
        return img.convert("L")
    if mode == "P":
        return img.quantize(colors=29, method=2)
    if mode == "PT":
        p = img.quantize(colors=19, method=2)
        p.info["transparency"] = 4
        return p
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "LA":
        return Image.fromarray(np.dstack([np.asarray(img.convert("L")), alpha]), "LA")
    raise ValueError(mode)


IMAGES = {  # file: (w, h, mode, smooth)
    "rgb_64x48.png": (64, 48, "RGB", False),
    "rgb_97x61.png": (97, 61, "RGB", False),
    "rgb_1x1.png": (1, 1, "RGB", False),
    "rgb_2x2.png": (2, 2, "RGB", False),
    "gray_37x53.png": (37, 53, "L", False),
    "pal_45x31.png": (45, 31, "P", False),
    "ptrans_50x22.png": (50, 22, "PT", False),
    "la_29x40.png": (29, 40, "LA", False),
    "rgba_33x47.png": (33, 47, "RGBA", False),
    "wide_180x4.png": (180, 4, "RGB", False),
    "tall_4x150.png": (4, 150, "RGB", False),
    "large_160x120.png": (160, 120, "RGB", True),
    "large_120x156.png": (120, 156, "RGBA", True),
}
# 31 s and 65 s clips go through the whole pipeline in test_processor (proc/minicpmo
# fixtures); repeating them here would double the largest fixtures.
AUDIOS = {"a_0_1s.wav": 0.1, "a_5s.wav": 5.0}


def write_media():
    os.makedirs(MEDIA, exist_ok=True)
    for seed, (name, (w, h, mode, smooth)) in enumerate(IMAGES.items()):
        make_image(w, h, seed + 1, mode, smooth).save(os.path.join(MEDIA, name), optimize=True)
    for seed, (name, secs) in enumerate(AUDIOS.items()):
        rng = np.random.default_rng(100 + seed)
        n = int(round(secs * 16000))
        t = np.arange(n) / 16000.0
        f = 180 + 90 * seed + 40 * np.sin(2 * np.pi * 0.3 * t)
        x = 0.35 * np.sin(2 * np.pi * np.cumsum(f) / 16000.0) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
        x = x + 0.03 * rng.standard_normal(n)
        sf.write(os.path.join(MEDIA, name), np.clip(x, -1, 1), 16000, subtype="PCM_16")


def media_path(f):
    return os.path.join(MEDIA, f)


# ------------------------------------------------------------------------------------------
# Messages: parts are ("text", s) | ("image", file) | ("audio", file)

def T(s):
    return ("text", s)


def I(f):  # noqa: E743
    return ("image", f)


def A(f):
    return ("audio", f)


def openai_messages(msgs):
    out = []
    for role, content in msgs:
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts = []
        for kind, v in content:
            if kind == "text":
                parts.append({"type": "text", "text": v})
            elif kind == "image":
                parts.append({"type": "image_url", "image_url": {"url": v}})
            else:
                parts.append({"type": "input_audio", "input_audio": {"data": v, "format": "wav"}})
        out.append({"role": role, "content": parts})
    return out


def hf_messages(msgs):
    """The HF form: {"type": "image", "path": file} for apply_chat_template to load."""
    out = []
    for role, content in msgs:
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts = []
        for kind, v in content:
            if kind == "text":
                parts.append({"type": "text", "text": v})
            elif kind == "image":
                parts.append({"type": "image", "path": media_path(v)})
            else:
                parts.append({"type": "audio", "path": media_path(v)})
        out.append({"role": role, "content": parts})
    return out


def media_of(msgs):
    return [{"kind": k, "file": v} for _, c in msgs if not isinstance(c, str) for k, v in c
            if k in ("image", "audio")]


# Vision chat cases shared by the vision families.
VISION_CHAT = [
    ("image_then_text", [("user", [I("rgb_64x48.png"), T("What is in this image?")])]),
    ("text_then_image_gray", [("user", [T("Describe:"), I("gray_37x53.png")])]),
    ("two_images_palette", [("user", [I("pal_45x31.png"), T("and"), I("ptrans_50x22.png"),
                                      T("- which is warmer?")])]),
    ("three_images_alpha", [("user", [I("rgba_33x47.png"), I("la_29x40.png"), I("rgb_97x61.png"),
                                      T("Sort them by brightness.")])]),
    ("system_and_image", [("system", "You are terse."),
                          ("user", [I("rgb_97x61.png"), T("Caption it.")])]),
    ("multi_turn_image_earlier", [("user", [I("wide_180x4.png"), T("What is it?")]),
                                  ("assistant", "A thin strip."),
                                  ("user", "What colour is it?")]),
    ("multi_turn_images_two_turns", [("user", [I("tall_4x150.png"), T("First one.")]),
                                     ("assistant", "Noted."),
                                     ("user", [T("Now this:"), I("rgb_64x48.png")])]),
    ("image_only", [("user", [I("rgb_2x2.png")])]),
    ("tiny_1x1", [("user", [I("rgb_1x1.png"), T("Any colour?")])]),
    ("large_rgba", [("user", [I("large_120x156.png"), T("Describe the scene in detail.")])]),
    ("text_only_system", [("system", "Answer in one word."), ("user", "Hello there.")]),
    ("text_only", [("user", [T("Héllo ✓ 日本, {{ not a tag }}")])]),
    ("multi_turn_text", [("system", "Be brief."), ("user", "What is 2+2?"), ("assistant", "4"),
                         ("user", "And 3+3?")]),
]

MINICPMO_CHAT = [
    ("audio_then_text", [("user", [A("a_0_1s.wav"), T("Transcribe this.")])]),
    ("text_then_audio_5s", [("user", [T("What is said?"), A("a_5s.wav")])]),
    ("two_audio_one_message", [("user", [T("Compare"), A("a_0_1s.wav"), A("a_5s.wav")])]),
    ("audio_two_turns", [("system", "Listen."), ("user", [A("a_0_1s.wav"), T("What is said?")]),
                         ("assistant", "Hello."), ("user", [T("Again:"), A("a_5s.wav")])]),
    ("image_audio_text", [("user", [I("rgb_64x48.png"), A("a_0_1s.wav"), T("Describe both.")])]),
    ("audio_image_interleaved", [("user", [A("a_0_1s.wav"), T("then"), I("gray_37x53.png"),
                                           T("then"), A("a_5s.wav"), I("rgba_33x47.png")])]),
    ("image_earlier_audio_later", [("user", [I("rgb_97x61.png"), T("Look.")]),
                                   ("assistant", "I see it."),
                                   ("user", [A("a_0_1s.wav"), T("And this?")])]),
]


# ------------------------------------------------------------------------------------------
# Families

def write_tokenizer(tok_name, d, extra_unk=False):
    src = os.path.join(FIXTURES, "tokenizer", tok_name)
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, fn)):
            shutil.copy(os.path.join(src, fn), os.path.join(d, fn))
    if extra_unk:  # MiniCPM-o's vocabulary has <unk>; the fixture tokenizer does not
        tj = json.load(open(os.path.join(d, "tokenizer.json")))
        tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
        new_id = max(max(tj["model"]["vocab"].values()), max(a["id"] for a in tj["added_tokens"])) + 1
        entry = {"content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
        tj["added_tokens"].append(dict(id=new_id, **entry))
        tc["added_tokens_decoder"][str(new_id)] = entry
        json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w"), ensure_ascii=False)
        json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1, ensure_ascii=False)


def dump(d, name, obj):
    with open(os.path.join(d, name), "w") as f:
        json.dump(obj, f, indent=1)


def template_spec(family, revision):
    t = next(t for t in gen_chat.TEMPLATES if t["family"] == family and t["revision"] == revision)
    return t


def date_dependent(template, messages, tokens):
    """True when rendering changes with the date strftime_now() returns."""
    outs = []
    for when in (gen_chat.FIXED_NOW, gen_chat._dt.datetime(2031, 7, 2, 18, 0, 0)):
        class _D(gen_chat._dt.datetime):
            @classmethod
            def now(cls, tz=None, _w=when):
                return _w
        ctu.datetime = _D
        try:
            outs.append(ctu.render_jinja_template(conversations=[messages], chat_template=template,
                                                  add_generation_prompt=True, **tokens)[0][0])
        except Exception:
            outs.append(None)
    ctu.datetime = gen_chat._FixedDatetime
    return outs[0] != outs[1]


class Family:
    def __init__(self, name, model_type, template):
        self.name, self.model_type = name, model_type
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.model = os.path.join(self.dir, "model")
        os.makedirs(self.model)
        os.makedirs(os.path.join(self.dir, "cases"))
        self.cases = []
        self.tspec = template_spec(*template) if template else None
        self.template = gen_chat.template_text(self.tspec, os.path.join(FIXTURES, "chat")) if template else None
        if template and self.template is None:
            print(f"  {name}: template {template} not available; chat cases skipped")

    share_from = None  # a family whose outputs are the same: refer to its files

    def save(self, case, tensors):
        case["outputs"] = f"cases/{case['name']}.safetensors"
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        if self.share_from:
            case["outputs"] = f"../{self.share_from}/cases/{case['name']}.safetensors"
            with safe_open(os.path.join(self.dir, case["outputs"]), "np") as f:
                same = sorted(f.keys()) == sorted(tensors) and all(
                    f.get_tensor(k).dtype == v.dtype and np.array_equal(f.get_tensor(k), v)
                    for k, v in tensors.items())
            assert same, f"{self.name}/{case['name']} differs from {self.share_from}"
        else:
            save_file(tensors, os.path.join(self.dir, case["outputs"]))
        ids = [int(x) for x in np.asarray(tensors["input_ids"]).reshape(-1)]
        case["input_ids"] = ids if len(ids) <= 400 else len(ids)
        self.cases.append(case)

    def write(self):
        t = None
        if self.tspec:
            t = {k: self.tspec[k] for k in ("family", "revision", "base", "path", "extract", "source")}
        dump(self.dir, "cases.json", {"family": self.name, "model_type": self.model_type,
                                      "reference": "transformers " + __import__("transformers").__version__,
                                      "template": t, "cases": self.cases})
        n_chat = sum(c["kind"] == "chat" for c in self.cases)
        print(f"  {self.name}: {n_chat} chat + {len(self.cases) - n_chat} raw cases")


def np_tensors(out):
    t = {}
    for k, v in out.items():
        a = np.asarray(v)
        if a.dtype == np.float64:
            raise TypeError(f"{k} is float64")
        t[k] = a
    return t


class HFFamily(Family):
    """Families whose processor is a transformers class."""

    def __init__(self, name, model_type, template, make_proc):
        super().__init__(name, model_type, template)
        self.make_proc = make_proc

    def proc(self):
        return self.make_proc(AutoTokenizer.from_pretrained(self.model))

    def chat(self, name, msgs, cli=False):
        if self.template is None:
            return
        if getattr(self, "list_content", False):  # the template indexes content parts only
            msgs = [(r, [T(c)] if isinstance(c, str) else c) for r, c in msgs]
        proc = self.proc()
        hf = hf_messages(msgs)
        tokens = dict(proc.tokenizer.special_tokens_map)
        if date_dependent(self.template, hf, tokens):
            print(f"  {self.name}/{name}: the rendering depends on today's date; left out")
            return
        out = proc.apply_chat_template(hf, chat_template=self.template, tokenize=True,
                                       return_dict=True, add_generation_prompt=True,
                                       return_tensors="np")
        case = {"name": name, "kind": "chat", "messages": openai_messages(msgs), "media": media_of(msgs),
                "cli": cli}
        self.save(case, np_tensors(out))

    def raw(self, name, prompt, images, add_special=True, cli=False, nest=False):
        proc = self.proc()
        pil = [Image.open(media_path(f)) for f in images]
        kw = {} if add_special else {"add_special_tokens": False}
        out = proc(text=prompt, images=([pil] if nest else pil) or None, return_tensors="np", **kw)
        case = {"name": name, "kind": "raw", "prompt": prompt, "add_special_tokens": add_special,
                "media": [{"kind": "image", "file": f} for f in images], "cli": cli}
        self.save(case, np_tensors(out))


def vision_chat_cases(fam, cli_names=("image_then_text", "multi_turn_images_two_turns", "text_only_system")):
    for name, msgs in VISION_CHAT:
        fam.chat(name, msgs, cli=name in cli_names)


# ---- Qwen2-VL / Qwen2.5-VL -------------------------------------------------------------

def qwen(name, model_type, cls):
    pp = pick(ckpt_json("Qwen--Qwen2-VL-2B", "preprocessor_config.json"),
              ["min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size",
               "image_mean", "image_std", "image_processor_type", "processor_class"])
    if model_type == "qwen2_5_vl":
        pp["processor_class"] = "Qwen2_5_VLProcessor"

    def make(tok):
        ip = Qwen2VLImageProcessorPil(**{k: v for k, v in pp.items()
                                         if k not in ("image_processor_type", "processor_class")})
        return cls(image_processor=ip, tokenizer=tok)

    fam = HFFamily(name, model_type, ("qwen2_vl", "qwen2-vl-instruct"), make)
    if model_type == "qwen2_5_vl":  # same image processor and expansion: same tensors
        fam.share_from = "qwen2_vl"
    write_tokenizer("qwen2", fam.model)
    dump(fam.model, "preprocessor_config.json", pp)
    tok = AutoTokenizer.from_pretrained(fam.model)
    dump(fam.model, "config.json", {"model_type": model_type,
                                    "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
                                    "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
                                    "vision_config": {"spatial_merge_size": 2, "patch_size": 14,
                                                      "temporal_patch_size": 2}})
    vision_chat_cases(fam)
    V = "<|vision_start|><|image_pad|><|vision_end|>"
    U = "<|im_start|>user\n"
    E = "<|im_end|>\n<|im_start|>assistant\n"
    fam.raw("raw_rgb", U + V + "Describe this image." + E, ["rgb_97x61.png"], cli=True)
    fam.raw("raw_gray", V + "gray", ["gray_37x53.png"])
    fam.raw("raw_palette", V + "palette", ["pal_45x31.png"])
    fam.raw("raw_ptrans", V + "palette with transparency", ["ptrans_50x22.png"])
    fam.raw("raw_la", V + "grey + alpha", ["la_29x40.png"], add_special=False)
    fam.raw("raw_rgba", V + "rgba", ["rgba_33x47.png"])
    fam.raw("raw_1x1", V, ["rgb_1x1.png"])
    fam.raw("raw_wide", "wide " + V, ["wide_180x4.png"])
    fam.raw("raw_tall", V + " tall", ["tall_4x150.png"])
    fam.raw("raw_large", U + V + "big" + E, ["large_160x120.png"], cli=True)
    fam.raw("raw_multi", "A " + V + " B " + V + " C " + V, ["rgb_64x48.png", "la_29x40.png", "rgb_2x2.png"])
    fam.raw("raw_text_only", U + "No image here." + E, [])
    fam.write()


# ---- LLaVA-NeXT --------------------------------------------------------------------------

def llava_next():
    # llava-hf/llava-v1.6-mistral-7b-hf preprocessor values (the hub file; not in
    # ../shared), with the 336 px tile scaled to 28 (pinpoints likewise) so fixtures stay small.
    pp = {"image_processor_type": "LlavaNextImageProcessor", "processor_class": "LlavaNextProcessor",
          "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
          "do_center_crop": True, "do_pad": True, "rescale_factor": 0.00392156862745098,
          "size": {"shortest_edge": 28}, "crop_size": {"height": 28, "width": 28},
          "image_grid_pinpoints": [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]],
          "resample": 3, "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
    pc = {"processor_class": "LlavaNextProcessor", "patch_size": 14,
          "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1,
          "image_token": "<image>"}

    def make(tok):
        ip = LlavaNextImageProcessorPil(**{k: v for k, v in pp.items()
                                           if k not in ("image_processor_type", "processor_class")})
        return LlavaNextProcessor(image_processor=ip, tokenizer=tok,
                                  **{k: v for k, v in pc.items() if k != "processor_class"})

    fam = HFFamily("llava_next", "llava_next", ("llava_next", "llava-v1.6-mistral"), make)
    fam.list_content = True
    write_tokenizer("llama_spm", fam.model)
    dump(fam.model, "preprocessor_config.json", pp)
    dump(fam.model, "processor_config.json", pc)
    tok = AutoTokenizer.from_pretrained(fam.model)
    dump(fam.model, "config.json", {"model_type": "llava_next",
                                    "image_token_index": tok.convert_tokens_to_ids("<image>"),
                                    "vision_feature_select_strategy": "default",
                                    "image_grid_pinpoints": pp["image_grid_pinpoints"],
                                    "vision_config": {"patch_size": 14, "image_size": 28}})
    vision_chat_cases(fam)
    fam.raw("raw_rgb", "[INST] <image>\nWhat is shown in this image? [/INST]", ["rgb_97x61.png"], cli=True)
    fam.raw("raw_gray", "<image>\ngray", ["gray_37x53.png"])
    fam.raw("raw_palette", "<image>\npalette", ["pal_45x31.png"])
    fam.raw("raw_ptrans", "<image>\ntransparent palette", ["ptrans_50x22.png"])
    fam.raw("raw_la", "<image>\nLA", ["la_29x40.png"], add_special=False)
    fam.raw("raw_rgba", "<image>\nRGBA", ["rgba_33x47.png"])
    fam.raw("raw_1x1", "<image>", ["rgb_1x1.png"])
    fam.raw("raw_wide", "wide <image>", ["wide_180x4.png"])
    fam.raw("raw_tall", "<image> tall", ["tall_4x150.png"])
    fam.raw("raw_large", "[INST] <image>\nbig [/INST]", ["large_160x120.png"], cli=True)
    fam.raw("raw_multi", "A <image> B <image> C <image>", ["rgb_64x48.png", "large_120x156.png", "rgb_2x2.png"])
    fam.raw("raw_text_only", "[INST] no image [/INST]", [])
    fam.write()


# ---- MLlama ----------------------------------------------------------------------------

def mllama():
    # meta-llama/Llama-3.2-11B-Vision-Instruct preprocessor_config.json (../shared excerpt) with
    # the 560 px tile scaled to 28.
    src = os.path.join(CKPT, "meta-llama--Llama-3.2-11B-Vision-Instruct", "preprocessor_config.json.excerpt")
    pp = json.load(open(src)) if os.path.exists(src) else {
        "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
        "do_resize": True, "image_mean": CLIP_MEAN, "image_processor_type": "MllamaImageProcessor",
        "image_std": CLIP_STD, "max_image_tiles": 4, "resample": 2,
        "rescale_factor": 0.00392156862745098}
    pp["size"] = {"height": 28, "width": 28}

    def make(tok):
        ip = MllamaImageProcessorPil(**{k: v for k, v in pp.items() if k != "image_processor_type"})
        return MllamaProcessor(image_processor=ip, tokenizer=tok)

    fam = HFFamily("mllama", "mllama", ("mllama", "llama-3.2-vision"), make)
    write_tokenizer("llama3", fam.model)
    dump(fam.model, "preprocessor_config.json", pp)
    tok = AutoTokenizer.from_pretrained(fam.model)
    dump(fam.model, "config.json", {"model_type": "mllama", "architectures": ["MllamaForConditionalGeneration"],
                                    "image_token_index": tok.convert_tokens_to_ids("<|image|>"),
                                    "vision_config": {"image_size": 28, "max_num_tiles": 4}})
    # The template writes today's date into conversations without images or with a system
    # message; chat() leaves those out.
    for name, msgs in VISION_CHAT:
        fam.chat(name, msgs, cli=name in ("image_then_text", "multi_turn_images_two_turns"))
    P = "<|image|>"
    fam.raw("raw_rgb", P + "What is this?", ["rgb_97x61.png"], cli=True, nest=True)
    fam.raw("raw_gray", P + "gray", ["gray_37x53.png"], nest=True)
    fam.raw("raw_palette", P + "palette", ["pal_45x31.png"], nest=True)
    fam.raw("raw_ptrans", P + "transparent palette", ["ptrans_50x22.png"], nest=True)
    fam.raw("raw_la", P + "LA", ["la_29x40.png"], add_special=False, nest=True)
    fam.raw("raw_rgba", P + "RGBA", ["rgba_33x47.png"], nest=True)
    fam.raw("raw_1x1", P, ["rgb_1x1.png"], nest=True)
    fam.raw("raw_wide", "wide " + P, ["wide_180x4.png"], nest=True)
    fam.raw("raw_tall", P + " tall", ["tall_4x150.png"], nest=True)
    fam.raw("raw_large", P + P + "two big ones", ["large_160x120.png", "large_120x156.png"], cli=True, nest=True)
    fam.raw("raw_multi", "A " + P + " B " + P + " C " + P, ["rgb_64x48.png", "la_29x40.png", "rgb_2x2.png"],
            nest=True)
    fam.raw("raw_header_bos", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + P +
            "What?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", ["rgb_64x48.png"],
            add_special=False, nest=True)
    fam.raw("raw_text_only", "Just text.", [])
    fam.raw("raw_consecutive", P + P + "Compare these two.", ["pal_45x31.png", "large_120x156.png"], nest=True)
    fam.raw("raw_text_first", "Look at " + P + " closely", ["rgba_33x47.png"], add_special=False, nest=True)
    fam.raw("raw_2x2", P + "tiny", ["rgb_2x2.png"], nest=True)
    fam.write()


# ---- Mistral3 (Pixtral) ---------------------------------------------------------------

def mistral3():
    m = "mistralai--Mistral-Small-3.1-24B-Instruct-2503"
    pp = ckpt_json(m, "preprocessor_config.json")
    pc = ckpt_json(m, "processor_config.json")
    cfg = ckpt_json(m, "config.json")

    def make(tok):
        ip = pixtral_pil.PixtralImageProcessorPil(**pick(pp, [
            "do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std",
            "patch_size", "resample", "rescale_factor", "size"]))
        return PixtralProcessor(image_processor=ip, tokenizer=tok,
                                **{k: v for k, v in pc.items() if k != "processor_class"})

    fam = HFFamily("mistral3", "mistral3", ("mistral3", "mistral-small-3.1-2503"), make)
    write_tokenizer("tekken", fam.model)
    dump(fam.model, "preprocessor_config.json", pp)
    dump(fam.model, "processor_config.json", pc)
    dump(fam.model, "config.json", {"model_type": "mistral3", "image_token_index": cfg.get("image_token_index"),
                                    "spatial_merge_size": cfg["spatial_merge_size"],
                                    "vision_config": pick(cfg["vision_config"], ["patch_size", "image_size"])})
    # Without a system message the template writes today's date: every chat case has one.
    for name, msgs in VISION_CHAT:
        if msgs[0][0] != "system":
            msgs = [("system", "You describe images.")] + msgs
        fam.chat(name, msgs, cli=name in ("image_then_text", "multi_turn_images_two_turns"))
    fam.raw("raw_rgb", "[INST][IMG]What is this?[/INST]", ["rgb_97x61.png"], cli=True)
    fam.raw("raw_gray", "[IMG]gray", ["gray_37x53.png"])
    fam.raw("raw_palette", "[IMG]palette", ["pal_45x31.png"])
    fam.raw("raw_ptrans", "[IMG]transparent palette", ["ptrans_50x22.png"])
    fam.raw("raw_la", "[IMG]LA", ["la_29x40.png"], add_special=False)
    fam.raw("raw_rgba", "[IMG]RGBA", ["rgba_33x47.png"])
    fam.raw("raw_1x1", "[IMG]", ["rgb_1x1.png"])
    fam.raw("raw_wide", "wide [IMG]", ["wide_180x4.png"])
    fam.raw("raw_tall", "[IMG] tall", ["tall_4x150.png"])
    fam.raw("raw_large", "[INST][IMG]big[/INST]", ["large_160x120.png"], cli=True)
    fam.raw("raw_multi", "A [IMG] B [IMG] C [IMG]", ["rgb_64x48.png", "la_29x40.png", "rgb_2x2.png"])
    fam.raw("raw_text_only", "[INST]no image[/INST]", [])
    fam.write()


# ---- MiniCPM-o 2.6 ---------------------------------------------------------------------

MINICPMO_PP = {  # openbmb/MiniCPM-o-2_6 preprocessor_config.json, scale_resolution 448 -> 70
    "image_processor_type": "MiniCPMVImageProcessor", "feature_extractor_type": "WhisperFeatureExtractor",
    "processor_class": "MiniCPMOProcessor", "max_slice_nums": 9, "scale_resolution": 70, "patch_size": 14,
    "use_image_id": True, "image_feature_size": 64, "im_start": "<image>", "im_end": "</image>",
    "im_start_token": "<image>", "im_end_token": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
    "slice_start_token": "<slice>", "slice_end_token": "</slice>", "unk": "<unk>", "unk_token": "<unk>",
    "im_id_start": "<image_id>", "im_id_end": "</image_id>", "slice_mode": True,
    "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5], "version": 2.6,
    "feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
    "padding_value": 0.0, "padding_side": "right", "return_attention_mask": False,
}
TOKEN_ATTRS = {"im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
               "im_id_start": "<image_id>", "im_id_end": "</image_id>", "audio_start": "<|audio_start|>",
               "audio_end": "<|audio_end|>", "spk_start": "<|spk_bos|>", "spk_end": "<|spk_eos|>"}


def minicpmo_tensors(out, n_images):
    """The layout Tessera gives the hub processor's nested lists (gen_proc_minicpmo.py):
    pixel_values.<i> per slice, [n, 2] bounds; attention_mask (bool in HF) as I64."""
    t = {"input_ids": np.asarray(out["input_ids"], dtype=np.int64),
         "attention_mask": np.asarray(out["attention_mask"], dtype=np.int64)}
    pv = out["pixel_values"][0] if n_images else []
    for i, p in enumerate(pv):
        t["pixel_values.%d" % i] = np.ascontiguousarray(np.asarray(p, dtype=np.float32))
    if n_images:
        t["tgt_sizes"] = np.asarray(out["tgt_sizes"][0], dtype=np.int64).reshape(-1, 2)
        t["image_sizes"] = np.asarray(out["image_sizes"][0], dtype=np.int64).reshape(-1, 2)
    for k in ("image_bound", "audio_bounds", "spk_bounds"):
        t[k] = np.asarray(out[k][0], dtype=np.int64).reshape(-1, 2)
    if len(out["audio_features"]):
        t["audio_features"] = np.ascontiguousarray(np.asarray(out["audio_features"], dtype=np.float32))
        t["audio_feature_lens"] = np.asarray(out["audio_feature_lens"][0], dtype=np.int64).reshape(-1)
    return t


class MiniCPMO(Family):
    def __init__(self):
        super().__init__("minicpmo", "minicpmo", ("minicpmo", "minicpm-o-2.6-tts"))
        import gen_proc_minicpmo as g
        g.SRC = os.environ.get("MINICPMO_SRC", "")
        ImageProcessor, Processor = g.load_reference()
        write_tokenizer("qwen25_minicpmo", self.model, extra_unk=True)
        dump(self.model, "preprocessor_config.json", MINICPMO_PP)
        dump(self.model, "config.json", {"model_type": "minicpmo", "architectures": ["MiniCPMO"],
                                         "query_num": 64, "image_size": 448, "patch_size": 14,
                                         "use_image_id": True, "slice_mode": True,
                                         "slice_config": {"max_slice_nums": 9},
                                         "audio_pool_step": 2, "audio_chunk_length": 1.0})
        tok = AutoTokenizer.from_pretrained(self.model)
        for attr, content in TOKEN_ATTRS.items():
            setattr(tok, attr, content)
            setattr(tok, attr + "_id", tok.convert_tokens_to_ids(content))
        with contextlib.redirect_stdout(io.StringIO()):
            ip = ImageProcessor(**{k: v for k, v in MINICPMO_PP.items() if k != "image_processor_type"})
        fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                     chunk_length=30, padding_value=0.0)
        proc = Processor.__new__(Processor)
        proc.image_processor, proc.feature_extractor, proc.tokenizer = ip, fe, tok
        proc.version = ip.version
        self.proc, self.tok = proc, tok

    def run(self, text, images, audios, audio_parts):
        pil = [Image.open(media_path(f)) for f in images]
        wav = [sf.read(media_path(a), dtype="float32")[0] for a in audios]
        with contextlib.redirect_stdout(io.StringIO()):
            out = self.proc([text], [pil] if pil else None, [wav] if wav else None,
                            [audio_parts] if audio_parts is not None and wav else None,
                            max_slice_nums=None, use_image_id=None, chunk_input=True,
                            return_tensors="pt")
        return minicpmo_tensors(out, len(pil))

    def chat(self, name, msgs, cli=False):
        """model.chat(): content flattened per message, audio_parts = message index per clip."""
        if self.template is None:
            return
        flat, images, audios, parts = [], [], [], []
        for i, (role, content) in enumerate(msgs):
            content = [T(content)] if isinstance(content, str) else content
            cur = []
            for kind, v in content:
                if kind == "image":
                    images.append(v)
                    cur.append("(<image>./</image>)")
                elif kind == "audio":
                    audios.append(v)
                    parts.append(i)
                    cur.append("(<audio>./</audio>)")
                else:
                    cur.append(v)
            flat.append({"role": role, "content": "\n".join(cur)})
        assert audios, "chat() renders with the tokenizer's template without audio (not public)"
        rendered, _ = ctu.render_jinja_template(conversations=[flat], chat_template=self.template,
                                                add_generation_prompt=True,
                                                **dict(self.tok.special_tokens_map))
        case = {"name": name, "kind": "chat", "messages": openai_messages(msgs), "media": media_of(msgs),
                "cli": cli}
        self.save(case, self.run(rendered[0], images, audios, parts))

    def raw(self, name, prompt, images=(), audios=(), cli=False):
        case = {"name": name, "kind": "raw", "prompt": prompt, "add_special_tokens": True,
                "media": [{"kind": "image", "file": f} for f in images] +
                         [{"kind": "audio", "file": f} for f in audios], "cli": cli}
        self.save(case, self.run(prompt, list(images), list(audios), None))


def minicpmo():
    fam = MiniCPMO()
    for name, msgs in MINICPMO_CHAT:
        fam.chat(name, msgs, cli=name in ("audio_then_text", "image_audio_text"))
    IM, AU = "(<image>./</image>)", "(<audio>./</audio>)"
    fam.raw("raw_rgb", IM + "\nWhat is this?", ["rgb_97x61.png"], cli=True)
    fam.raw("raw_gray", IM + "\ngray", ["gray_37x53.png"])
    fam.raw("raw_palette", IM + "\npalette", ["pal_45x31.png"])
    fam.raw("raw_ptrans", IM + "\ntransparent palette", ["ptrans_50x22.png"])
    fam.raw("raw_la", IM + "\nLA", ["la_29x40.png"])
    fam.raw("raw_rgba", IM + "\nRGBA", ["rgba_33x47.png"])
    fam.raw("raw_2x2", IM, ["rgb_2x2.png"])  # 1x1 (height 1) is refused by the hub processor
    fam.raw("raw_wide", "wide " + IM, ["wide_180x4.png"])
    fam.raw("raw_tall", IM + " tall", ["tall_4x150.png"])
    fam.raw("raw_large", IM + "\nbig", ["large_160x120.png"], cli=True)
    fam.raw("raw_multi", "A " + IM + " B " + IM + " C " + IM, ["rgb_64x48.png", "la_29x40.png", "rgb_2x2.png"])
    fam.raw("raw_audio_0_1s", AU + "\nTranscribe.", audios=["a_0_1s.wav"])
    fam.raw("raw_audio_5s", AU + "\nTranscribe.", audios=["a_5s.wav"], cli=True)
    fam.raw("raw_two_audio", "First " + AU + " then " + AU, audios=["a_0_1s.wav", "a_5s.wav"])
    fam.raw("raw_image_audio", IM + " and " + AU + " together", ["rgb_64x48.png"], ["a_0_1s.wav"])
    fam.raw("raw_audio_then_image", AU + " then " + IM, ["rgb_97x61.png"], ["a_0_1s.wav"])
    fam.raw("raw_palette_audio", IM + AU + "\nBoth.", ["pal_45x31.png"], ["a_5s.wav"])
    fam.raw("raw_text_only", "No media here.", [])
    fam.write()


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    write_media()
    qwen("qwen2_vl", "qwen2_vl", Qwen2VLProcessor)
    qwen("qwen2_5_vl", "qwen2_5_vl", Qwen2_5_VLProcessor)
    llava_next()
    mllama()
    mistral3()
    minicpmo()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"  pipeline fixtures: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
