#!/usr/bin/env python3
"""A fake OpenAI-compatible chat-completions server, for the server-side captioning path
(GOMODEL_CAPTION_URL = its base URL, ending in /v1; GOMODEL_CAPTION_API_KEY = its key).

As a script:  fake_openai.py [--host 127.0.0.1] [--port 0] [--key KEY] [--model NAME]
  prints its base URL (http://127.0.0.1:PORT/v1) on one line, then serves until SIGINT/SIGTERM;
  one line a request on stderr.
As a module:
    with FakeOpenAI(key="sk-test") as fake:          # or fake.start() … fake.stop()
        fake.base_url                                # http://127.0.0.1:PORT/v1
        fake.replies.append("Turn the sky red.")     # next answers, in order (str or fn(body, images) -> str)
        fake.fail_next(2, status=429)                # the next 2 chat requests fail so (or 500, …)
        …
        fake.requests                                # every request received, see Recorded

POST /v1/chat/completions checks what OpenAI checks (Bearer key, JSON body, model, messages,
content parts, max_tokens / max_completion_tokens, temperature) and, stricter than OpenAI, that
every image_url is a base64 data: URL of real PNG, JPEG or WebP bytes of the declared type (a
remote URL is refused: nothing can be fetched in the tests). Errors have OpenAI's shape,
{"error": {"message", "type", "param", "code"}}. Without a queued reply the answer is
"Make it look like a watercolour painting. (images: N)", N the number of images seen. Streaming is not
supported (400). GET /v1/models lists the model. Stdlib only.
"""
import argparse
import base64
import binascii
import http.server
import json
import re
import signal
import struct
import sys
import threading
import time
import uuid

SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
# The chat-completions parameters OpenAI knows; anything else is refused as OpenAI refuses it.
KNOWN_PARAMETERS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
    "stream_options", "stop", "seed", "user", "safety_identifier", "prompt_cache_key", "response_format",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "store", "metadata",
    "reasoning_effort", "verbosity", "service_tier", "tools", "tool_choice", "parallel_tool_calls",
    "modalities", "audio", "prediction", "web_search_options", "functions", "function_call",
}
ROLES = {"system", "developer", "user", "assistant", "tool"}


class Recorded(dict):
    """One request: method, path, headers (lower-case names), body (parsed JSON or None), raw
    (bytes), status (what it was answered), images (per image_url: {"format", "width", "height",
    "bytes"}, in order), reply (the text answered, or None)."""


class ApiError(Exception):
    def __init__(self, status, message, kind="invalid_request_error", param=None, code=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def image_size(data):
    """(format, width, height) from an image's header, or None when it is no PNG, JPEG or WebP."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:3] == b"\xff\xd8\xff":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
                i += 2
                continue
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return "jpeg", width, height
            i += 2 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return "webp", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def decode_image_url(url, param):
    """The image of a data: URL, checked: {"format", "width", "height", "bytes"}."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise ApiError(400, "This fake accepts only base64 data: URLs as image_url.url "
                       "(data:image/png;base64,…); nothing can be fetched in the tests.", param=param, code="invalid_image_url")
    match = re.fullmatch(r"data:(image/[a-z]+);base64,(.*)", url, re.DOTALL)
    if not match:
        raise ApiError(400, "Invalid image_url: expected data:image/<png|jpeg|webp>;base64,<data>.", param=param, code="invalid_image_url")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "Invalid base64 in image_url.", param=param, code="invalid_image_url")
    found = image_size(data)
    if not found or found[1] == 0 or found[2] == 0:
        raise ApiError(400, "You uploaded an unsupported image. Please make sure your image is valid and has one of the "
                       "following formats: ['png', 'jpeg', 'webp'].", param=param, code="invalid_image_format")
    declared = {"image/jpg": "jpeg"}.get(match.group(1), match.group(1)[len("image/"):])
    if declared != found[0]:
        raise ApiError(400, f"image_url says {match.group(1)} but holds {found[0]} bytes.", param=param, code="invalid_image_format")
    return {"format": found[0], "width": found[1], "height": found[2], "bytes": len(data)}


def check_body(body):
    """Validates a chat-completions body as OpenAI does; returns the images seen."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid type for body: expected an object.")
    for name in body:
        if name not in KNOWN_PARAMETERS:
            raise ApiError(400, f"Unrecognized request argument supplied: {name}")
    if "model" not in body:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if not isinstance(body["model"], str) or not body["model"]:
        raise ApiError(400, "Invalid type for 'model': expected a non-empty string.", param="model", code="invalid_type")
    messages = body.get("messages")
    if messages is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "Invalid 'messages': expected a non-empty array.", param="messages", code="invalid_value")
    images = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(400, f"Invalid '{where}.role': expected one of {sorted(ROLES)}.", param=f"{where}.role", code="invalid_value")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            raise ApiError(400, f"Invalid '{where}.content': expected a string or a non-empty array of content parts.",
                           param=f"{where}.content", code="invalid_type")
        for j, part in enumerate(content):
            param = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise ApiError(400, f"Missing required parameter: '{param}.text'.", param=f"{param}.text", code="missing_required_parameter")
            elif kind == "image_url":
                if message["role"] != "user":
                    raise ApiError(400, f"Invalid '{param}.type': image_url is only supported in user messages.", param=f"{param}.type", code="invalid_value")
                image_url = part.get("image_url")
                if not isinstance(image_url, dict):
                    raise ApiError(400, f"Missing required parameter: '{param}.image_url'.", param=f"{param}.image_url", code="missing_required_parameter")
                if image_url.get("detail", "auto") not in ("auto", "low", "high"):
                    raise ApiError(400, f"Invalid '{param}.image_url.detail'.", param=f"{param}.image_url.detail", code="invalid_value")
                images.append(decode_image_url(image_url.get("url"), f"{param}.image_url.url"))
            else:
                raise ApiError(400, f"Invalid value: '{kind}'. Supported values are: 'text' and 'image_url'.", param=f"{param}.type", code="invalid_value")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ApiError(400, f"Invalid '{name}': expected an integer of at least 1.", param=name, code="invalid_value")
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise ApiError(400, "Use either max_tokens or max_completion_tokens, not both.", param="max_tokens", code="invalid_value")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2):
        raise ApiError(400, "Invalid 'temperature': expected a number from 0 to 2.", param="temperature", code="invalid_value")
    if body.get("stream"):
        raise ApiError(400, "This fake does not stream; send stream: false or leave it out.", param="stream", code="unsupported_value")
    return images


def default_reply(body, images):
    return f"Make it look like a watercolour painting. (images: {len(images)})"


class FakeOpenAI:
    def __init__(self, key="sk-test", host="127.0.0.1", port=0, models=None, log=None):
        self.key, self.host, self.port = key, host, port
        self.models = models  # None: any model name is accepted
        self.log = log  # a file for one line per request, or None
        self.requests = []
        self.replies = []  # queued answers: str, or fn(body, images) -> str
        self.reply = default_reply  # fn(body, images) -> str, when nothing is queued
        self._failures = []  # (status, headers) for the next chat requests
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}/v1"

    def fail_next(self, count, status=500, retry_after=None):
        """The next `count` authorised chat requests answer `status` (500, 429, 503…) with OpenAI's
        error body; `retry_after` (seconds) adds a Retry-After header."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures.extend([(status, headers)] * count)

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients expect from an API

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

            def log_message(self, *args):
                pass  # one line a request is written by _handle

        self._server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _handle(self, handler, method):
        record = Recorded(method=method, path=handler.path, headers={k.lower(): v for k, v in handler.headers.items()},
                          body=None, raw=b"", status=None, images=[], reply=None)
        try:
            record["raw"] = read_body(handler)
            status, payload, headers = self._answer(record)
        except ApiError as error:
            status, payload, headers = error.status, error.body(), error.headers
        except Exception as error:  # a bug in the fake: still answer, and say so
            status, payload, headers = 500, ApiError(500, f"fake_openai: {type(error).__name__}: {error}", "server_error").body(), {}
        record["status"] = status
        with self._lock:
            self.requests.append(record)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        if self.log:
            print(f"fake_openai: {method} {handler.path} -> {status}", file=self.log, flush=True)

    def _answer(self, record):
        path = record["path"].split("?", 1)[0]
        route = (record["method"], path)
        if route not in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
            raise ApiError(404, f"Invalid URL ({record['method']} {path})")
        auth = record["headers"].get("authorization", "")
        if not auth:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header "
                           "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if auth != f"Bearer {self.key}":
            shown = auth[len("Bearer "):] if auth.startswith("Bearer ") else auth
            raise ApiError(401, f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        if route[0] == "GET":
            names = self.models or ["gpt-4o-mini"]
            return 200, {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "system"} for n in names]}, {}
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            status, headers = failure
            if status == 429:
                wait = headers.get("Retry-After", "1")
                raise ApiError(429, f"Rate limit reached for requests. Please try again in {wait}s.", "requests",
                               code="rate_limit_exceeded", headers=headers)
            raise ApiError(status, SERVER_ERROR, "server_error", headers=headers)
        try:
            record["body"] = json.loads(record["raw"])
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                           "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
                           "valid JSON.)")
        body = record["body"]
        record["images"] = check_body(body)
        if self.models is not None and body["model"] not in self.models:
            raise ApiError(404, f"The model `{body['model']}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        with self._lock:
            queued = self.replies.pop(0) if self.replies else None
        if queued is None:
            text = self.reply(body, record["images"])
        else:
            text = queued(body, record["images"]) if callable(queued) else queued
        record["reply"] = text
        prompt_tokens = sum(len(json.dumps(m.get("content")).split()) for m in body["messages"]) + 85 * len(record["images"])
        completion_tokens = len(text.split())
        return 200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }, {}


def read_body(handler):
    """The request body, with Content-Length or chunked transfer encoding."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        data = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return data
            data += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def main():
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible chat-completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: the system chooses (default)")
    parser.add_argument("--key", default="sk-test", help="the API key it accepts (default sk-test)")
    parser.add_argument("--model", action="append", help="a model name it knows (repeatable; default: any)")
    args = parser.parse_args()
    fake = FakeOpenAI(key=args.key, host=args.host, port=args.port, models=args.model, log=sys.stderr)
    print(fake.start(), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()


if __name__ == "__main__":
    main()
