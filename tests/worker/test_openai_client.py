# The official OpenAI Python client against loom-worker (--backend cpu, stories260K): streamed and
# whole chat and text completions, usage, an API key, and the client's typed errors for a 400/401/404.
# Exit 77 (skipped) when the `openai` package is not installed (python3 -m pip install openai).
import signal
import sys
import tempfile

from worker_process import model_path, start_worker

try:
    import openai
except ImportError:
    print("SKIPPED: the openai Python package is not installed (python3 -m pip install openai)")
    sys.exit(77)


def main():
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc, port = start_worker(log, ["--api-key", "sk-loom"])
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-loom", max_retries=0)
            messages = [{"role": "user", "content": "Tell me a story about a cat."}]

            whole = client.chat.completions.create(model="stories260K", messages=messages, max_tokens=32,
                                                   temperature=0)
            text = whole.choices[0].message.content
            assert whole.choices[0].message.role == "assistant"
            assert text, whole
            assert whole.usage.completion_tokens > 0

            pieces, finish, usage, chunks = [], None, None, 0
            for chunk in client.chat.completions.create(model="stories260K", messages=messages, max_tokens=32,
                                                        temperature=0, stream=True,
                                                        stream_options={"include_usage": True}):
                chunks += 1
                if chunk.usage:
                    usage = chunk.usage
                for choice in chunk.choices:
                    pieces.append(choice.delta.content or "")
                    finish = choice.finish_reason or finish
            assert "".join(pieces) == text, ("".join(pieces), text)
            assert finish == whole.choices[0].finish_reason, finish
            assert usage is not None and usage.total_tokens == whole.usage.total_tokens, usage
            assert chunks > 3, chunks

            completion = client.completions.create(model="stories260K", prompt="Once upon a time", max_tokens=16,
                                                   temperature=0)
            streamed = "".join(c.choices[0].text for c in client.completions.create(
                model="stories260K", prompt="Once upon a time", max_tokens=16, temperature=0, stream=True)
                if c.choices)
            assert streamed == completion.choices[0].text, (streamed, completion)
            assert completion.choices[0].text.startswith(", there was"), completion

            assert [m.id for m in client.models.list().data] == ["stories260K"]

            try:
                client.chat.completions.create(model="stories260K", messages=messages, n=2)
                raise AssertionError("n=2 was accepted")
            except openai.BadRequestError as e:
                assert "not supported" in str(e), e
            try:
                client.chat.completions.create(model="gpt-4o", messages=messages)
                raise AssertionError("an unknown model was accepted")
            except openai.NotFoundError:
                pass
            try:
                openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0) \
                    .chat.completions.create(model="stories260K", messages=messages)
                raise AssertionError("a wrong API key was accepted")
            except openai.AuthenticationError:
                pass
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        assert code == 0, (code, open(log.name).read())
    print(f"openai {openai.__version__}: chat and completions, whole and streamed, errors typed; exit 0 on SIGTERM")


if __name__ == "__main__":
    main()
