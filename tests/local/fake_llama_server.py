"""A stand-in for ``python -m llama_cpp.server``: same flags, tiny OpenAI-shaped replies.

The tests install it as ``llama_cpp/server/__main__.py`` in a temporary directory on PYTHONPATH,
so `start_servers` launches it exactly as it launches the real server. Behaviour is chosen by
``FAKE_LLAMA_BEHAVIOUR``: ``ok`` (default), ``crash`` (exits at once), ``hang`` (never listens),
``port-once`` (fails with 'address already in use' the first time, flag file
``FAKE_LLAMA_FLAG``), ``ignore-term`` (ignores SIGTERM), ``busy-on-flag`` (``/v1/models`` stalls
for 3 s once the flag file exists, like llama-cpp-python while it generates). Replies echo what
was asked, so tests can check what the client sent. A chat request that asks for ``logprobs``
gets the first token's top alternatives ``Yes`` (-0.1) and ``No`` (-2.4) when the server was
started with ``--logits_all True``, like llama-cpp-python (which refuses them otherwise: 500).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--model_alias", required=True)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--logits_all", default="False")
    args, _ = parser.parse_known_args()
    return args


TOP_LOGPROBS = [{"token": "Yes", "logprob": -0.1}, {"token": "No", "logprob": -2.4}]


def _handler(alias: str, logits_all: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write("fake: " + format % args + "\n")

        def _reply(self, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            flag = os.environ.get("FAKE_LLAMA_FLAG", "")
            busy = os.environ.get("FAKE_LLAMA_BEHAVIOUR") == "busy-on-flag"
            if busy and flag and Path(flag).exists():
                time.sleep(3)
            if self.path == "/v1/models":
                self._reply({"object": "list", "data": [{"id": alias, "object": "model"}]})
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            echo = json.dumps({"model": data.get("model"), "stop": data.get("stop")})
            usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            if self.path == "/v1/chat/completions":
                if data.get("logprobs") and not logits_all:
                    self.send_error(500, "logprobs is not supported with logits_all=False")
                    return
                message = {"role": "assistant", "content": f"chat {echo}"}
                choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
                if data.get("logprobs"):
                    first = {"token": "Yes", "logprob": -0.1, "top_logprobs": TOP_LOGPROBS}
                    choice["logprobs"] = {"content": [first]}
            elif self.path == "/v1/completions":
                text = f"completion {echo} prompt-tail={data['prompt'][-40:]!r}"
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            else:
                self.send_error(404)
                return
            self._reply({"id": "x", "object": "fake", "choices": [choice], "usage": usage})

    return Handler


def main() -> None:
    args = _args()
    behaviour = os.environ.get("FAKE_LLAMA_BEHAVIOUR", "ok")
    if behaviour == "crash":
        sys.stdout.write("fake llama: boom, model failed to load\n")
        sys.exit(3)
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "port-once":
        flag = Path(os.environ["FAKE_LLAMA_FLAG"])
        if not flag.exists():
            flag.write_text("1")
            sys.stdout.write(
                "ERROR: [Errno 98] error while attempting to bind: address already in use\n"
            )
            sys.exit(1)
    if behaviour == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not Path(args.model).is_file():
        sys.stdout.write(f"no model file {args.model}\n")
        sys.exit(2)
    server = ThreadingHTTPServer(
        (args.host, args.port), _handler(args.model_alias, args.logits_all == "True")
    )
    sys.stdout.write(f"fake llama serving {args.model_alias} on {args.host}:{args.port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
