#!/usr/bin/env python3
"""`vlq serve` driven by the official openai client (run by run_openai_client_test.sh).

Starts the server on a free loopback port with the bundled tiny model, then checks: chat with images
(data: URLs) streaming and not, completions, greedy answers equal to `vlq generate` for the same prompt,
N concurrent clients each getting their own answer, malformed/ill-typed/huge/bad-base64/path-traversal/
unauthorized requests each getting their error, a client disconnecting mid-stream, the metrics back to
zero (no leaked KV blocks), and SIGTERM draining then exiting 0. Prints 'N passed, N failed'.
"""
import argparse
import base64
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import openai

KEY = "sk-vlq-test"
QUESTION = "What color is the shape?"
IMAGES = ["color-0000.png", "color-0001.png", "color-0002.png", "color-0003.png", "color-0004.png", "color-0005.png"]


class Server:
    def __init__(self, vlq, root):
        self.root = root
        cmd = [vlq, "serve", "--model", os.path.join(root, "models/qwen2_5_vl-tiny-trained"), "--port", "0",
               "--api-key", KEY, "--served-model-name", "tiny", "--max-num-seqs", "4",
               "--allowed-media-dir", os.path.join(root, "data/heldout"), "--max-body-mb", "4"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.log = []
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def raw(self, path, body=None, key=KEY, method=None):
        """(status, body text) of a request with urllib (for bodies the client would not send)."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.base + path, data=data, method=method or ("POST" if data is not None else "GET"))
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", "Bearer " + key)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        _, text = self.raw("/metrics", key=None)
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.split(" ", 1)
                out[name] = float(value)
        return out

    def settles(self):
        for _ in range(200):
            m = self.metrics()
            if (m.get("vlq_requests_in_flight") == 0 and m.get("vlq_kv_blocks_used") == 0
                    and m.get("vlq_runner_live_sequences") == 0 and m.get("vlq_running_sequences") == 0):
                return True
            time.sleep(0.05)
        return False


def data_url(root, name):
    with open(os.path.join(root, "data/heldout/images", name), "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def image_messages(url, text=QUESTION):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def vlq_generate(vlq, root, image, prompt=QUESTION, max_new=16):
    out = subprocess.run([vlq, "generate", "--model", os.path.join(root, "models/qwen2_5_vl-tiny-trained"), "--image",
                          os.path.join(root, "data/heldout/images", image), "--prompt", prompt, "--max-new-tokens",
                          str(max_new), "-q"], capture_output=True, text=True, check=True)
    return out.stdout.rstrip("\n")


def error_of(status_body):
    status, body = status_body
    return status, json.loads(body)["error"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlq", required=True)
    ap.add_argument("--root", required=True)
    args = ap.parse_args()
    srv = Server(args.vlq, args.root)
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key=KEY, max_retries=0, timeout=60)
    want = {im: vlq_generate(args.vlq, args.root, im) for im in IMAGES}
    results = []

    def check(name, fn):
        try:
            fn()
            results.append((name, True))
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001 -- report and go on
            results.append((name, False))
            print(f"FAIL {name}\n{traceback.format_exc()}")

    def chat_non_stream():
        r = client.chat.completions.create(model="tiny", messages=image_messages(data_url(args.root, "color-0003.png")),
                                           max_tokens=16)
        assert r.choices[0].message.content == want["color-0003.png"], (r.choices[0].message.content, want)
        assert r.choices[0].finish_reason == "stop"
        assert r.usage.prompt_tokens > 16 and r.usage.completion_tokens >= 1
        models = client.models.list()
        assert [m.id for m in models.data] == ["tiny"]

    def chat_stream():
        stream = client.chat.completions.create(model="tiny", messages=image_messages(data_url(args.root, "color-0001.png")),
                                                max_tokens=16, stream=True, stream_options={"include_usage": True})
        text, reason, usage = "", None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                reason = c.finish_reason or reason
        assert text == want["color-0001.png"], (text, want["color-0001.png"])
        assert reason == "stop" and usage is not None and usage.completion_tokens >= 1

    def completions():
        r = client.completions.create(model="tiny", prompt="What color", max_tokens=4, extra_body={"ignore_eos": True})
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4
        s = client.completions.create(model="tiny", prompt="What color", max_tokens=4, stream=True,
                                      extra_body={"ignore_eos": True})
        assert "".join(c.choices[0].text for c in s if c.choices) == r.choices[0].text

    def concurrent_clients():
        def one(im):
            c = openai.OpenAI(base_url=srv.base + "/v1", api_key=KEY, max_retries=0, timeout=60)
            r = c.chat.completions.create(model="tiny", messages=image_messages(data_url(args.root, im)), max_tokens=16)
            return r.choices[0].message.content
        with concurrent.futures.ThreadPoolExecutor(len(IMAGES)) as ex:
            got = dict(zip(IMAGES, ex.map(one, IMAGES)))
        assert got == want, (got, want)

    def errors():
        good = image_messages(data_url(args.root, "color-0000.png"))
        for bad_body, param in [("{not json", None), ("[]", None),
                                (json.dumps({"messages": good, "temperature": "hot"}), "temperature"),
                                (json.dumps({"messages": good, "max_tokens": -1}), "max_tokens"),
                                (json.dumps({"messages": good, "n": 3}), "n"),
                                (json.dumps({"messages": "hello"}), "messages")]:
            status, err = error_of(srv.raw("/v1/chat/completions", bad_body))
            assert status == 400 and (param is None or err["param"] == param), (bad_body, status, err)
        status, err = error_of(srv.raw("/v1/chat/completions", " " * (5 << 20)))
        assert status == 413, (status, err)
        for url in ["data:image/png;base64,!!!notbase64", "../../../../etc/passwd", "file:///etc/passwd",
                    "images/../../models/qwen2_5_vl-tiny-trained/config.json", "http://127.0.0.1:1/x.png"]:
            try:
                client.chat.completions.create(model="tiny", messages=image_messages(url), max_tokens=4)
                raise AssertionError("accepted " + url)
            except openai.BadRequestError as e:
                assert e.status_code == 400 and "root:" not in str(e.body)
        try:
            openai.OpenAI(base_url=srv.base + "/v1", api_key="wrong", max_retries=0).models.list()
            raise AssertionError("wrong key accepted")
        except openai.AuthenticationError as e:
            assert e.status_code == 401
        try:
            client.chat.completions.create(model="gpt-x", messages=good, max_tokens=4)
            raise AssertionError("unknown model accepted")
        except openai.NotFoundError as e:
            assert e.status_code == 404
        r = client.chat.completions.create(model="tiny", messages=good, max_tokens=16)
        assert r.choices[0].message.content == want["color-0000.png"]

    def disconnect_mid_stream():
        before = srv.metrics().get("vlq_client_disconnects_total", 0)
        stream = client.completions.create(model="tiny", prompt="Count", max_tokens=1900, stream=True,
                                           extra_body={"ignore_eos": True})
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
        assert srv.settles(), srv.metrics()
        assert srv.metrics().get("vlq_client_disconnects_total", 0) >= before + 1

    for name, fn in [("chat_non_stream", chat_non_stream), ("chat_stream", chat_stream), ("completions", completions),
                     ("concurrent_clients", concurrent_clients), ("errors", errors),
                     ("disconnect_mid_stream", disconnect_mid_stream)]:
        check(name, fn)
    check("metrics_back_to_zero", lambda: (_ for _ in ()).throw(AssertionError(srv.metrics())) if not srv.settles() else None)

    def sigterm_drains():
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=40)
        assert rc == 0, (rc, "".join(srv.log[-5:]))
    check("sigterm_drains", sigterm_drains)
    if srv.proc.poll() is None:
        srv.proc.kill()
    passed = sum(ok for _, ok in results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
