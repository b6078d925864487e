#!/usr/bin/env python3
# Dev-time check for the GPU machine (stdlib only, no openai package there): starts `vlq serve` on the bundled
# tiny model, asks greedy chat questions about bundled images (one request at a time, then all at once so that
# their image chunks share steps), and compares every answer with `vlq generate` on the same device.
# Usage: tools/serve_probe.py VLQ [--device cuda] [--port 8931]; exit 0 when every answer matches.
import argparse
import base64
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/qwen2_5_vl-tiny-trained")
IMAGES = ["color-0003.png", "color-0001.png", "shape-0001.png", "count-0002.png"]
QUESTION = "What color is the shape?"


def generate(vlq, device, image):
    out = subprocess.run([vlq, "generate", "--model", MODEL, "--device", device, "--image",
                          os.path.join(ROOT, "data/heldout/images", image), "--prompt", QUESTION, "--max-new-tokens", "12",
                          "--temperature", "0", "-q"], capture_output=True, text=True, check=True)
    return out.stdout.rstrip("\n")


def chat(port, image):
    with open(os.path.join(ROOT, "data/heldout/images", image), "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    body = {"model": "tiny", "max_tokens": 12, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vlq")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--port", type=int, default=8931)
    a = ap.parse_args()
    want = {im: generate(a.vlq, a.device, im) for im in IMAGES}
    srv = subprocess.Popen([a.vlq, "serve", "--model", MODEL, "--device", a.device, "--port", str(a.port),
                            "--served-model-name", "tiny"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{a.port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        bad = 0
        for im in IMAGES:
            got = chat(a.port, im)
            ok = got == want[im]
            bad += not ok
            print(f"{'ok  ' if ok else 'DIFF'} one-at-a-time {im}: serve {got!r} generate {want[im]!r}")
        with concurrent.futures.ThreadPoolExecutor(len(IMAGES)) as ex:
            for im, got in zip(IMAGES, ex.map(lambda im: chat(a.port, im), IMAGES)):
                ok = got == want[im]
                bad += not ok
                print(f"{'ok  ' if ok else 'DIFF'} concurrent {im}: serve {got!r} generate {want[im]!r}")
        print("serve_probe:", "all answers equal" if bad == 0 else f"{bad} answers differ")
        return 1 if bad else 0
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
