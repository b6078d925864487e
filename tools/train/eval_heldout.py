#!/usr/bin/env python3
# Scores a Qwen2.5-VL checkpoint on the held-out set data/heldout/heldout.jsonl with Hugging Face transformers
# (stock model + AutoProcessor + greedy generate), per task, against the chance level of each task.
#
#   /root/venv-ref/bin/python tools/train/eval_heldout.py --model models/qwen2_5_vl-tiny-trained \
#       --data data/heldout [--device cpu] [--dtype bf16] [--out eval.json]
# The scoring rule (tiny_vl_data.normalize_answer): lower-case, trim, collapse whitespace, drop one trailing '.',
# then exact string match with the expected answer.
import argparse
import collections
import json
import os
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_vl_data as D  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}


def load_rows(data_dir):
    with open(os.path.join(data_dir, "heldout.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def chance_levels(rows):
    """Per task: uniform chance over the answer set, and the majority-answer baseline on these rows."""
    out = {}
    by_task = collections.defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    for task, rs in by_task.items():
        answers = collections.Counter(D.normalize_answer(r["answer"]) for r in rs)
        choices = rs[0].get("choices")
        n_choices = len(choices) if choices else None
        out[task] = dict(n=len(rs), uniform=(1.0 / n_choices) if n_choices else None,
                         majority=answers.most_common(1)[0][1] / len(rs), majority_answer=answers.most_common(1)[0][0])
    return out


class ManualProcessor:
    """What Qwen2_5_VLProcessor does for images (expand <|image_pad|> to grid_t*grid_h*grid_w/merge^2 copies,
    tokenise, add mm_token_type_ids), for environments without torchvision, which AutoProcessor needs for the
    video processor."""

    def __init__(self, model_dir):
        from transformers import AutoImageProcessor, AutoTokenizer
        try:
            self.image_processor = AutoImageProcessor.from_pretrained(model_dir)
        except ImportError:  # transformers 5.17 wants torchvision for the default backend
            from transformers import Qwen2VLImageProcessorPil
            self.image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        with open(os.path.join(model_dir, "chat_template.jinja")) as f:
            self.chat_template = f.read()
        self.image_token_id = self.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    def apply_chat_template(self, messages, **kw):
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kw)

    def __call__(self, text, images, padding=False, return_tensors="pt"):
        from transformers import BatchFeature
        img = self.image_processor(images=images, return_tensors="pt")
        merge = self.image_processor.merge_size ** 2
        counts = iter((img["image_grid_thw"].prod(-1) // merge).tolist())
        out = []
        for t in text:
            parts = t.split("<|image_pad|>")
            out.append(parts[0] + "".join("<|image_pad|>" * next(counts) + p for p in parts[1:]))
        enc = self.tokenizer(out, padding=padding, return_tensors=return_tensors, add_special_tokens=False)
        enc["mm_token_type_ids"] = (enc["input_ids"] == self.image_token_id).int()
        return BatchFeature(dict(**enc, **img))

    def batch_decode(self, *a, **kw):
        return self.tokenizer.batch_decode(*a, **kw)


def load_processor(model_dir):
    """AutoProcessor, or ManualProcessor where torchvision (needed by the video processor) is missing."""
    from transformers import AutoProcessor
    try:
        return AutoProcessor.from_pretrained(model_dir)
    except ImportError:
        return ManualProcessor(model_dir)


@torch.no_grad()
def evaluate(model_dir, data_dir, device="cpu", dtype=torch.bfloat16, batch_size=32, limit=None, log=print):
    from transformers import Qwen2_5_VLForConditionalGeneration
    processor = load_processor(model_dir)
    processor.tokenizer.padding_side = "left"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    rows = load_rows(data_dir)
    if limit:
        rows = [r for t in D.TASKS for r in [x for x in rows if x["task"] == t][:limit]]
    t0 = time.time()
    preds = []
    for b in range(0, len(rows), batch_size):
        batch = rows[b:b + batch_size]
        texts = [processor.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False)
                 for r in batch]
        images = [Image.open(os.path.join(data_dir, r["image"])).convert("RGB") for r in batch]
        inputs = processor(text=texts, images=images, padding=True, return_tensors="pt").to(device)
        out = model.generate(**inputs, max_new_tokens=48, do_sample=False)
        preds += processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    secs = time.time() - t0
    per_task = collections.defaultdict(lambda: [0, 0])
    details = []
    for r, p in zip(rows, preds):
        ok = D.is_correct(p, r["answer"])
        per_task[r["task"]][0] += ok
        per_task[r["task"]][1] += 1
        details.append(dict(id=r["id"], task=r["task"], expected=r["answer"], predicted=p, correct=bool(ok)))
    chance = chance_levels(rows)
    result = dict(model=model_dir, data=data_dir, device=str(device), dtype=str(dtype).replace("torch.", ""),
                  transformers=__import__("transformers").__version__, torch=torch.__version__,
                  seconds=round(secs, 1), tasks={}, predictions=details)
    log(f"{'task':16s} {'n':>4s} {'correct':>7s} {'accuracy':>8s} {'uniform':>8s} {'majority':>8s}")
    for t in D.TASKS:
        if t not in per_task:
            continue
        c, n = per_task[t]
        ch = chance[t]
        result["tasks"][t] = dict(n=n, correct=c, accuracy=c / n, chance_uniform=ch["uniform"],
                                  majority_baseline=ch["majority"], majority_answer=ch["majority_answer"])
        uni = f"{ch['uniform']:.3f}" if ch["uniform"] else "   -"
        log(f"{t:16s} {n:4d} {c:7d} {c / n:8.3f} {uni:>8s} {ch['majority']:8.3f}")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/qwen2_5_vl-tiny-trained")
    ap.add_argument("--data", default="data/heldout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="at most this many rows per task")
    ap.add_argument("--out", default=None, help="write the result (with every prediction) as JSON here")
    args = ap.parse_args()
    torch.manual_seed(0)
    res = evaluate(args.model, args.data, args.device, DTYPES[args.dtype], args.batch_size, args.limit)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
