#!/usr/bin/python3
"""Writes the seed corpus of fuzz_gateway (tests/fuzz/corpus-gateway/). Layout of an input: see
the comment at the top of fuzz_gateway.cc. Run from anywhere: python3 tests/fuzz/make_gateway_seeds.py"""
import gzip
import json
import os
import zlib

REQUEST, STREAM, BODY, ROUTE = 0, 1, 2, 3
CHAT, RESPONSES, ANTHROPIC, GEMINI = 0, 1, 2, 3
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus-gateway")


def seed(name, mode, selector, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([mode, selector]) + data)


def sse(events):
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"
    return out


chat_request = {"model": "gpt-5.5", "stream": True, "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "list files"},
    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "shell", "arguments": "{\"command\":\"ls -la\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "README.txt"}]}
responses_request = {"model": "gpt-5.5", "instructions": "Be brief.", "input": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "ok"}], "stream": True}
anthropic_request = {"model": "claude-sonnet-4-5", "max_tokens": 64, "system": "terse",
                     "metadata": {"user_id": "user_ab_account_cd_session_0f"},
                     "messages": [{"role": "user", "content": [
                         {"type": "tool_result", "tool_use_id": "t1", "content": "done"}]}]}
gemini_request = {"systemInstruction": {"parts": [{"text": "terse"}]}, "contents": [
    {"role": "user", "parts": [{"text": "hi"}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"x": 1.5e3}}}]}]}

for name, api, body in [("req-chat", CHAT, chat_request), ("req-responses", RESPONSES, responses_request),
                        ("req-anthropic", ANTHROPIC, anthropic_request), ("req-gemini", GEMINI, gemini_request)]:
    raw = json.dumps(body).encode()
    seed(name, REQUEST, api, raw)
    seed(name + "-gzip", REQUEST, api, b"gzip\n" + gzip.compress(raw, mtime=0))
    seed(name + "-deflate", REQUEST, api, b"deflate\n" + zlib.compress(raw))
seed("req-numbers", REQUEST, CHAT, b'{"a":[-0,0.1,1e400,18446744073709551615,-9223372036854775808,"\\u00e9\\ud83d\\ude00"]}')

seed("stream-chat", STREAM, CHAT | (7 << 2), sse([
    (None, {"id": "c", "model": "gpt-5.5", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "function": {"name": "shell", "arguments": "{\"cmd\""}}]}}]}),
    (None, {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":\"ls\"}"}}]}}]}),
    (None, {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                     "prompt_tokens_details": {"cached_tokens": 4},
                                     "completion_tokens_details": {"reasoning_tokens": 1}}}),
    (None, b"[DONE]")]) + b": keep-alive\n\n")
seed("stream-responses", STREAM, RESPONSES | (3 << 2), sse([
    ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                    "item": {"type": "function_call", "call_id": "c1", "name": "exec_command"}}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "output_index": 0, "delta": "{\"cmd\":1}"}),
    ("response.completed", {"type": "response.completed", "response": {"model": "gpt-5.5", "usage": {
        "input_tokens": 9, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1},
        "output_tokens_details": {"reasoning_tokens": 1}}}})]))
seed("stream-anthropic", STREAM, ANTHROPIC | (1 << 2), sse([
    ("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {
        "input_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 3,
        "cache_creation": {"ephemeral_1h_input_tokens": 1}}}}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "t1", "name": "Bash", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "{\"command\":\"ls\"}"}}),
    ("ping", {"type": "ping"}),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
    ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]))
seed("stream-gemini", STREAM, GEMINI, sse([
    (None, {"candidates": [{"content": {"parts": [{"functionCall": {"name": "run", "args": {"c": "ls"}}}]}}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 1,
                              "cachedContentTokenCount": 1, "toolUsePromptTokenCount": 1},
            "modelVersion": "gemini-2.5-pro"})]).replace(b"\n", b"\r\n"))

seed("body-chat", BODY, CHAT, json.dumps({"model": "gpt-5.5", "choices": [{"message": {"tool_calls": [
    {"id": "a", "function": {"name": "f", "arguments": "{}"}}]}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode())
seed("body-anthropic-error", BODY, ANTHROPIC, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}')
seed("body-gemini-array", BODY, GEMINI, b'[{"usageMetadata":{"promptTokenCount":1}},{"usageMetadata":{"candidatesTokenCount":2}}]')

POST, GET, DROP_KEY = 0 << 2, 1 << 2, 0x10
for i, (method, target) in enumerate([
        (POST, b"/v1/chat/completions"), (POST, b"/responses?x=1"), (POST, b"/v1/messages?beta=true"),
        (POST, b"/v1/messages/count_tokens"),
        (POST, b"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=abc"),
        (POST, b"/models/gemini-2.5-flash:countTokens"), (GET, b"/v1/models"),
        (GET, b"/v1beta/models?key=x&pageSize=5")]):
    seed(f"route-{i}", ROUTE, method | DROP_KEY, target)

RELAY = 4
SSE, HOLD_EVENTS, HOLD_BODY, STRIP = 0x04, 0x08, 0x10, 0x20
chat_stream = sse([
    (None, {"id": "c", "model": "gpt-5.5", "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
    (None, {"id": "c", "model": "gpt-5.5", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}),
    (None, b"[DONE]")])
seed("relay-chat-strip", RELAY, CHAT | SSE | STRIP, bytes([6]) + b": keep-alive\n\n" + chat_stream)
seed("relay-chat-strip-hold", RELAY, CHAT | SSE | STRIP | HOLD_EVENTS, bytes([40]) + chat_stream.replace(b"\n", b"\r\n"))
seed("relay-anthropic", RELAY, ANTHROPIC | SSE | HOLD_EVENTS, bytes([9]) + open(os.path.join(OUT, "stream-anthropic"), "rb").read()[2:])
seed("relay-body", RELAY, RESPONSES | HOLD_BODY, bytes([3]) + json.dumps({"model": "gpt-5.5", "output": [
    {"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"}],
    "usage": {"input_tokens": 3, "output_tokens": 1}}).encode())
