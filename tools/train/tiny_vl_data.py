# Shared task definitions for the tiny trained Qwen2.5-VL: scene/text/stamp image generators, prompts, answer sets,
# chat template, special tokens and the scoring rule (used by prepare_data.py, train.py and eval_heldout.py).
#
# Every generator is a pure function of (seed, task, index) -> (PIL RGB image 112x112, question, answer), so the
# training pools (seed 0, made on the GPU machine) and the committed held-out set (seed 1) come from the same
# distribution but never share an image.
import functools
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 112  # every image is 112x112 RGB -> 8x8 patches of 14 px -> 4x4 = 16 LLM tokens

# ---------------------------------------------------------------------------------------------------------------
# Tokens and template
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
            "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
SPECIAL_IS_SPECIAL = [True] * 14 + [False] * 8  # same flags as Qwen2.5-VL's added_tokens
SYSTEM_PROMPT = "You are a helpful assistant."

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")

# The Qwen2.5-VL-Instruct chat template, as shipped with the hub checkpoints.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}")

# ---------------------------------------------------------------------------------------------------------------
# Tasks
COLORS = {"red": (220, 30, 30), "green": (30, 150, 40), "blue": (30, 60, 220), "yellow": (235, 205, 20),
          "purple": (140, 40, 170), "orange": (245, 130, 20)}
SHAPES = ["circle", "square", "triangle", "star"]
QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]
WORDS = ["cat", "dog", "sun", "moon", "tree", "fish", "bird", "star", "cake", "boat", "book", "milk",
         "rain", "snow", "frog", "lamp", "ship", "rose", "king", "door", "hat", "egg", "car", "box"]
COUNT_MAX = 6
# Tux Paint stamp folders -> one-word category (coarse so that each class has tens of images).
STAMP_CATEGORY = {"symbols": "symbol", "animals": "animal", "food": "food", "plants": "food", "town": "place"}
STAMP_CATEGORY_DEFAULT = "object"  # clothes, household, hobbies, sports, vehicles, military, medical, space, ...
CATEGORIES = ["symbol", "animal", "food", "place", "object"]

QUESTIONS = {
    "color": "What color is the shape?",
    "shape": "What shape is this?",
    "count": "How many shapes are there?",
    "position": "Where is the {color} shape?",
    "text": "What word is written in the picture?",
    "stamp_caption": "Describe this image.",
    "stamp_category": "What kind of thing is this? Answer symbol, animal, food, place or object.",
}
ANSWER_SETS = {"color": list(COLORS), "shape": SHAPES, "count": [str(i) for i in range(1, COUNT_MAX + 1)],
               "position": QUADRANTS, "text": WORDS, "stamp_category": CATEGORIES}
SCENE_TASKS = ["color", "shape", "count", "position", "text"]
TASKS = SCENE_TASKS + ["stamp_caption", "stamp_category"]


def normalize_answer(s):
    """The scoring rule: lower-case, trim, collapse inner whitespace, drop one trailing '.'."""
    s = re.sub(r"\s+", " ", s.strip().lower())
    if s.endswith("."):
        s = s[:-1].rstrip()
    return s


def is_correct(prediction, expected):
    return normalize_answer(prediction) == normalize_answer(expected)


def stamp_category(relpath):
    top = relpath.split("/", 1)[0]
    return STAMP_CATEGORY.get(top, STAMP_CATEGORY_DEFAULT)


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers
def _rng(seed, task, index):
    return np.random.default_rng([seed, TASKS.index(task), index])


def _background(rng):
    base = int(rng.integers(215, 256))
    return tuple(int(np.clip(base + rng.integers(-12, 13), 0, 255)) for _ in range(3))


def _jitter(rgb, rng, amount=18):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _draw_shape(draw, shape, x0, y0, size, fill):
    x1, y1 = x0 + size, y0 + size
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0 + size / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "star":
        cx, cy, r_out = x0 + size / 2, y0 + size / 2, size / 2
        pts = []
        for k in range(10):
            r = r_out if k % 2 == 0 else r_out * 0.45
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + r * np.cos(a), cy + r * np.sin(a) + size * 0.05))
        draw.polygon(pts, fill=fill)
    else:
        raise ValueError(shape)


def _place_boxes(rng, n, smin, smax, region=(0, 0, IMAGE_SIZE, IMAGE_SIZE), gap=3, tries=200):
    """n non-overlapping squares (x, y, size) inside region; None if it fails."""
    rx, ry, rw, rh = region
    boxes = []
    for _ in range(n):
        for _ in range(tries):
            s = int(rng.integers(smin, smax + 1))
            x = int(rng.integers(rx + 2, rx + rw - s - 2))
            y = int(rng.integers(ry + 2, ry + rh - s - 2))
            if all(x + s + gap <= bx or bx + bs + gap <= x or y + s + gap <= by or by + bs + gap <= y
                   for bx, by, bs in boxes):
                boxes.append((x, y, s))
                break
        else:
            return None
    return boxes


@functools.lru_cache(maxsize=64)
def _font(path, size):
    return ImageFont.truetype(path, size)


def make_scene(seed, task, index, font_path=None):
    """-> (PIL RGB image, question, answer) for one of SCENE_TASKS."""
    rng = _rng(seed, task, index)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), _background(rng))
    draw = ImageDraw.Draw(img)
    if task in ("color", "shape"):
        color = list(COLORS)[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        (x, y, s), = _place_boxes(rng, 1, 26, 56)
        _draw_shape(draw, shape, x, y, s, _jitter(COLORS[color], rng))
        return img, QUESTIONS[task], color if task == "color" else shape
    if task == "count":
        n = int(rng.integers(1, COUNT_MAX + 1))
        boxes = None
        while boxes is None:
            boxes = _place_boxes(rng, n, 12, 22)
        for x, y, s in boxes:
            color = list(COLORS)[rng.integers(len(COLORS))]
            _draw_shape(draw, SHAPES[rng.integers(len(SHAPES))], x, y, s, _jitter(COLORS[color], rng))
        return img, QUESTIONS[task], str(n)
    if task == "position":
        n = int(rng.integers(2, 4))
        quads = rng.permutation(4)[:n]
        colors = rng.permutation(len(COLORS))[:n]
        half = IMAGE_SIZE // 2
        for q, c in zip(quads, colors):
            region = ((q % 2) * half, (q // 2) * half, half, half)
            (x, y, s), = _place_boxes(rng, 1, 16, 30, region=region)
            _draw_shape(draw, SHAPES[rng.integers(len(SHAPES))], x, y, s, _jitter(list(COLORS.values())[c], rng))
        k = int(rng.integers(n))
        color = list(COLORS)[colors[k]]
        return img, QUESTIONS[task].format(color=color), QUADRANTS[quads[k]]
    if task == "text":
        word = WORDS[rng.integers(len(WORDS))]
        size = int(rng.integers(18, 33))
        font = _font(font_path, size)
        l, t, r, b = font.getbbox(word)
        while r - l > IMAGE_SIZE - 8:
            size -= 2
            font = _font(font_path, size)
            l, t, r, b = font.getbbox(word)
        x = int(rng.integers(4 - l, IMAGE_SIZE - 4 - r + 1))
        y = int(rng.integers(4 - t, IMAGE_SIZE - 4 - b + 1))
        color = tuple(int(v) for v in rng.integers(0, 120, size=3))
        draw.text((x, y), word, fill=color, font=font)
        return img, QUESTIONS[task], word
    raise ValueError(task)


def compose_stamp(sprite, seed, task, index):
    """Paste an RGBA sprite (PIL, longest side <= 100) at a random scale/position on a white or light background.

    Transparent pixels show the background: the same 'alpha over an opaque canvas' rule transformers'
    convert_rgb applies (over white) to RGBA inputs."""
    rng = _rng(seed, task, index)
    scale = float(rng.uniform(0.6, 1.0))
    w, h = sprite.size
    nw, nh = max(8, round(w * scale)), max(8, round(h * scale))
    sp = sprite.resize((nw, nh), Image.BICUBIC)
    bg = (255, 255, 255) if rng.random() < 0.5 else _background(rng)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), bg)
    x = int(rng.integers(0, IMAGE_SIZE - nw + 1))
    y = int(rng.integers(0, IMAGE_SIZE - nh + 1))
    img.paste(sp, (x, y), sp)
    return img


def messages_for(question, image_ref="image.png"):
    """The user turn as the chat template expects it (one image, then the question)."""
    return [{"role": "user", "content": [{"type": "image", "image": image_ref}, {"type": "text", "text": question}]}]


def training_texts():
    """Strings the tokenizer is trained on besides the captions."""
    out = [SYSTEM_PROMPT, "system", "user", "assistant"]
    out += [q for t, q in QUESTIONS.items() if t != "position"]
    out += [QUESTIONS["position"].format(color=c) for c in COLORS]
    for answers in ANSWER_SETS.values():
        out += answers
    return out
