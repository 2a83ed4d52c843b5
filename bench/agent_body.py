#!/usr/bin/env python3
"""Prints an OpenAI Chat request shaped like a coding agent's turn, for
bench/gateway_latency.sh --body: a long system prompt, the user's task, then six tool calls
(a shell command each) with their outputs, as Codex-style agents resend the whole
conversation on every turn. The default is about 27 KiB; the words are a fixed pseudo-random
choice, so every run sends the same bytes.

    bench/agent_body.py [SYSTEM_WORDS] > /tmp/agent.json
"""
import json
import random
import sys


def text(rng, words, count):
    return " ".join(rng.choice(words) for _ in range(count))


def main():
    system_words = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rng = random.Random(1)
    words = ("the a build test file run make error fix code agent tool result output line "
             "function class").split()
    messages = [{"role": "system", "content": text(rng, words, system_words)},
                {"role": "user", "content": "fix the failing test"}]
    for i in range(6):
        arguments = json.dumps({"command": ["bash", "-lc", f"make test {i}"]})
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "shell", "arguments": arguments}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}",
                         "content": text(rng, words, 300)})
    body = {"model": "gpt-5.5", "messages": messages, "max_completion_tokens": 16}
    sys.stdout.write(json.dumps(body))


if __name__ == "__main__":
    main()
