"""The providers' official Python SDKs against the mock provider server.

Each SDK is used the way its README shows, with only the base URL and an API key set: the paths,
auth headers, API versions and request bodies are the SDK's own defaults, so a mock that drifts
from what real clients send fails here. Every call's answer must parse into the SDK's types and
carry what the mock's deterministic answers promise (text, usage, vector sizes).

Usage: .tools/sdks/bin/python devtools/mock-providers/sdk-check/check_sdks.py http://127.0.0.1:8090
The venv comes from infra/local/tools.sh (versions pinned in infra/local/requirements/sdks.in).
A mock to point it at: `chorus mock-providers`; `make test` runs it through the Rust test
devtools/mock-providers/tests/official_sdks.rs, which serves the mock in-process.

Runs every check, prints one line each, and exits 1 if any failed.
"""

import math
import sys
import traceback

# The placeholder keys `chorus mock-providers` prints; the mock accepts any non-empty key.
OPENAI_KEY = "sk-mock"
ANTHROPIC_KEY = "sk-ant-mock"
GEMINI_KEY = "gemini-mock"
COHERE_KEY = "cohere-mock"

# No system prompt that names a Chorus task, so the mock echoes: "[<model>] <prompt>".
PROMPT = "Say hello to the Chorus mock."


def echoed(model):
    return f"[{model}] {PROMPT}"


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_vector(values, dims, what):
    expect(len(values) == dims, f"{what}: {len(values)} values, expected {dims}")
    expect(all(isinstance(v, float) and math.isfinite(v) for v in values), f"{what}: not all finite floats")
    norm = math.sqrt(sum(v * v for v in values))
    expect(abs(norm - 1.0) < 1e-3, f"{what}: norm {norm}, expected a unit vector")


def openai_chat(base):
    import openai

    client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key=OPENAI_KEY)
    model = "gpt-4o-mini"
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
    choice = reply.choices[0]
    expect(choice.message.content == echoed(model), f"content {choice.message.content!r}")
    expect(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason!r}")
    expect(reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0, f"usage {reply.usage}")


def openai_embeddings(base):
    import openai

    client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key=OPENAI_KEY)
    model = "text-embedding-3-small"
    # The SDK's default asks for base64 and decodes it; the float form must be the same vector.
    default = client.embeddings.create(model=model, input=["some words", "other words"])
    expect([d.index for d in default.data] == [0, 1], f"indexes {[d.index for d in default.data]}")
    expect_vector(default.data[0].embedding, 1536, "the default (base64) embedding")
    floats = client.embeddings.create(model=model, input=["some words"], encoding_format="float")
    pairs = zip(default.data[0].embedding, floats.data[0].embedding, strict=True)
    expect(all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in pairs), "base64 and float disagree")
    expect(default.data[0].embedding != default.data[1].embedding, "two texts, one vector")
    expect(default.usage.prompt_tokens > 0, f"usage {default.usage}")


def anthropic_messages(base):
    import anthropic

    client = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=ANTHROPIC_KEY)
    model = "claude-haiku-4-5"
    reply = client.messages.create(model=model, max_tokens=200, messages=[{"role": "user", "content": PROMPT}])
    expect(reply.content[0].type == "text", f"content {reply.content}")
    expect(reply.content[0].text == echoed(model), f"text {reply.content[0].text!r}")
    expect(reply.stop_reason == "end_turn", f"stop_reason {reply.stop_reason!r}")
    expect(reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0, f"usage {reply.usage}")


def gemini_client(base):
    from google import genai
    from google.genai import types

    return genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=f"{base}/gemini"))


def gemini_generate_content(base):
    from google.genai import types

    model = "gemini-2.5-flash"
    client = gemini_client(base)  # kept in a variable: a dropped Client closes its connections
    reply = client.models.generate_content(model=model, contents=PROMPT)
    expect(reply.text == echoed(model), f"text {reply.text!r}")
    expect(reply.candidates[0].finish_reason == types.FinishReason.STOP, f"{reply.candidates[0].finish_reason}")
    expect(reply.usage_metadata.prompt_token_count > 0, f"usage {reply.usage_metadata}")


def gemini_embed_content(base):
    client = gemini_client(base)
    reply = client.models.embed_content(model="gemini-embedding-001", contents=["some words", "other words"])
    expect(len(reply.embeddings) == 2, f"{len(reply.embeddings)} embeddings for two texts")
    expect_vector(reply.embeddings[0].values, 3072, "the embedding")
    expect(reply.embeddings[0].values != reply.embeddings[1].values, "two texts, one vector")


def cohere_chat(base):
    import cohere

    client = cohere.ClientV2(api_key=COHERE_KEY, base_url=f"{base}/cohere")
    model = "command-a-03-2025"
    reply = client.chat(model=model, messages=[{"role": "user", "content": PROMPT}])
    expect(reply.message.content[0].text == echoed(model), f"text {reply.message.content[0].text!r}")
    expect(reply.finish_reason == "COMPLETE", f"finish_reason {reply.finish_reason!r}")
    expect(reply.usage.billed_units.input_tokens > 0, f"usage {reply.usage}")


def cohere_embed(base):
    import cohere

    client = cohere.ClientV2(api_key=COHERE_KEY, base_url=f"{base}/cohere")
    reply = client.embed(
        model="embed-english-v3.0",
        texts=["some words", "other words"],
        input_type="search_document",
        embedding_types=["float"],
    )
    vectors = reply.embeddings.float_
    expect(len(vectors) == 2, f"{len(vectors)} vectors for two texts")
    expect_vector(vectors[0], 1024, "the embedding")
    expect(vectors[0] != vectors[1], "two texts, one vector")


CHECKS = [
    openai_chat,
    openai_embeddings,
    anthropic_messages,
    gemini_generate_content,
    gemini_embed_content,
    cohere_chat,
    cohere_embed,
]


def versions():
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ["openai", "anthropic", "google-genai", "cohere"])


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http"):
        print(f"usage: {sys.argv[0]} MOCK_BASE_URL (e.g. http://127.0.0.1:8090)", file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    print(f"official SDKs ({versions()}) against the mock on {base}", flush=True)
    failed = []
    for check in CHECKS:
        try:
            check(base)
            print(f"  ok      {check.__name__}", flush=True)
        except Exception:  # any failure, the SDK's own errors included, is reported the same way
            failed.append(check.__name__)
            print(f"  FAILED  {check.__name__}\n{traceback.format_exc()}", flush=True)
    if failed:
        print(f"check_sdks: {len(failed)} of {len(CHECKS)} failed: {', '.join(failed)}")
        return 1
    print(f"check_sdks: all {len(CHECKS)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
